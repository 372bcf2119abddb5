"""`pulumi-language-python` for the e2e toolchain: the pinned Python SDK's own language server.

The Go module proxy serves no version of `pulumi-language-python` (docs/e2e.md, "What the proxy
refuses"), so the real CLI cannot get its usual Python language host. This is a stand-in that
runs this project's program in the pinned `pulumi` SDK exactly as an Automation API inline
program runs: through the SDK's `LanguageRuntime` server (`pulumi.automation._server`). The CLI
starts it like any language plugin (`pulumi-language-python <engine address>`, working directory
the project root, which holds `venv/`), it prints its port, and each `Run` executes the project's
`__main__.py` with the stack's config, organization, project and stack.

What the real host does and this one does not: `pulumi install` (the venv comes from `make`),
`pulumi about`'s dependency listing, and declaring required plugins up front (the engine loads the
kubernetes plugin when the program first registers a resource of it).
"""
from __future__ import annotations

import json
import os
import runpy
import sys
from concurrent import futures
from pathlib import Path
from threading import Event
from typing import Any

import grpc
from pulumi.automation._server import LanguageServer
from pulumi.runtime.proto import language_pb2, language_pb2_grpc

PROGRAM = "__main__.py"
# The SDK server's errors that it has not logged itself (anything else is a logged RunError).
UNREPORTED = ("python inline source runtime error", "RPC error")


class ProjectLanguageServer(LanguageServer):
    def __init__(self, engine_address: str) -> None:
        super().__init__(self._run_program)
        self.engine_address = engine_address
        self.program_dir = Path.cwd()

    def _run_program(self) -> None:
        # The program imports its own packages (components/, jobs/) from the project root.
        sys.path.insert(0, str(self.program_dir))
        runpy.run_path(str(self.program_dir / PROGRAM), run_name="__main__")

    def Run(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        if request.pwd:
            self.program_dir = Path(request.pwd)
            os.chdir(request.pwd)
        # The SDK's server reads the engine address from the request's args, where the Automation
        # API puts it; the CLI gives it to a plugin on its command line instead.
        if not request.args:
            request.args.append(self.engine_address)
        # The real host hands the program its config in these variables; the program reads them
        # (pulumi.runtime.get_config_env), not the SDK's in-process config the server sets.
        os.environ["PULUMI_CONFIG"] = json.dumps(dict(request.config))
        os.environ["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(request.configSecretKeys))
        result = super().Run(request, context)
        if result.error and not result.error.startswith(UNREPORTED):
            # A RunError the server has already logged through the engine: like the real host,
            # say so (bail) instead of handing the same text back to be printed a second time.
            return language_pb2.RunResponse(bail=True)
        return result


def main(argv: list[str]) -> None:
    engine_address = next((a for a in argv if not a.startswith("-")), "")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(ProjectLanguageServer(engine_address), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    try:
        Event().wait()
    except KeyboardInterrupt:
        # How the CLI stops its plugins once the update is done: an ordinary end.
        server.stop(0)


if __name__ == "__main__":
    main(sys.argv[1:])
