"""The serve job's model behind bare FastAPI + uvicorn, no Ray: the Serve benchmark's baseline.

    python -m bench.bare_serve --port 8123 --storage-path DIR --model-name digits

Same request and response models, validation handler, model loading and predict code
as `jobs.serve` (its classifier class, instantiated directly), in one uvicorn process.
"""
# No `from __future__ import annotations`: FastAPI reads the route functions' annotations.
import argparse

import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from jobs.serve import DigitsClassifier, PredictRequest, PredictResponse, ServeConfig, invalid_request


def create_app(storage_path: str, model_name: str, max_rows: int) -> FastAPI:
    # @serve.ingress wraps the class as written in a subclass: its first base is that class.
    classifier = DigitsClassifier.func_or_class.__bases__[0](storage_path, model_name, max_rows, False)
    app = FastAPI(title="digits classifier, bare uvicorn")
    app.add_exception_handler(RequestValidationError, invalid_request)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return classifier.healthz()

    @app.post("/predict")
    def predict(request: PredictRequest) -> PredictResponse:
        return classifier.predict(request)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage-path", required=True)
    parser.add_argument("--model-name", required=True)
    args = parser.parse_args()
    app = create_app(args.storage_path, args.model_name, ServeConfig().max_rows)
    # uvicorn's defaults (one worker, access log on), loopback only.
    uvicorn.run(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
