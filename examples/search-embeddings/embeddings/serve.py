"""The embeddings endpoint in Ray Serve; deploy by import path `embeddings.serve:build`.

HTTP API under the app's route prefix:
  POST /embed   {"texts": ["...", ...]}                -> {"model", "dimensions", "embeddings": [[...], ...]}
  POST /search  {"query": "...", "top_k": 3}           -> {"matches": [{"id", "text", "label", "score"}, ...]}
                 (cosine similarity against the team's corpus, embedded when the replica starts)
  GET  /healthz                                          -> {"status": "ok", "corpus": <rows>}
Malformed input gets 400 with a reason, more than `max_texts` texts 413.

`build(args)` takes `num_replicas` (1), `num_cpus` (0.25) and `max_texts` (64): the app's own scale,
passed as `serve.args` in the team's stack file.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve
from ray.serve import Application
from starlette.requests import Request
from starlette.responses import JSONResponse

from embeddings.encoder import encode, load_encoder, read_corpus

MODEL = "all-MiniLM-L6-v2"


class BadRequest(ValueError):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@serve.deployment
class Embeddings:
    def __init__(self, max_texts: int) -> None:
        self.encoder = load_encoder()
        self.max_texts = max_texts
        self.corpus = read_corpus()
        self.corpus_vectors = encode(self.encoder, [r["text"] for r in self.corpus])

    def _texts(self, body: Any) -> list[str]:
        texts = body.get("texts") if isinstance(body, dict) else None
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise BadRequest(400, 'expected {"texts": [non-empty strings]}')
        if len(texts) > self.max_texts:
            raise BadRequest(413, f"at most {self.max_texts} texts per request")
        return texts

    def _search(self, body: Any) -> list[dict[str, Any]]:
        query, top_k = (body.get("query"), body.get("top_k", 3)) if isinstance(body, dict) else (None, None)
        if not isinstance(query, str) or not query.strip() or not isinstance(top_k, int) or not 1 <= top_k <= 20:
            raise BadRequest(400, 'expected {"query": "<text>", "top_k": 1..20}')
        scores = self.corpus_vectors @ encode(self.encoder, [query])[0]
        best = np.argsort(-scores)[:top_k]
        return [{**self.corpus[i], "score": round(float(scores[i]), 4)} for i in best]

    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if request.method == "GET" and path == "healthz":
            return JSONResponse({"status": "ok", "corpus": len(self.corpus)})
        if request.method != "POST" or path not in ("embed", "search"):
            return JSONResponse({"error": "POST /embed or /search, GET /healthz"}, status_code=404)
        try:
            try:
                body = await request.json()
            except ValueError:
                raise BadRequest(400, "the body is not JSON") from None
            if path == "search":
                return JSONResponse({"matches": self._search(body)})
            vectors = encode(self.encoder, self._texts(body))
            return JSONResponse({"model": MODEL, "dimensions": int(vectors.shape[1]),
                                 "embeddings": [[round(float(v), 6) for v in row] for row in vectors]})
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)


def build(args: dict[str, Any]) -> Application:
    """The application, scaled as `args` says."""
    unknown = sorted(set(args) - {"num_replicas", "num_cpus", "max_texts"})
    if unknown:
        raise ValueError(f"unknown args {unknown}; allowed: num_replicas, num_cpus, max_texts")
    deployment = Embeddings.options(num_replicas=int(args.get("num_replicas", 1)),
                                    ray_actor_options={"num_cpus": float(args.get("num_cpus", 0.25))})
    return deployment.bind(int(args.get("max_texts", 64)))
