"""`lmlab serve`: the OpenAI-compatible server."""

from __future__ import annotations

import socket
from enum import StrEnum
from typing import Annotated

import typer

from lmlab.cli.app import (
    BackendChoice,
    BackendOpt,
    DraftModelOpt,
    NumDraftOpt,
    SamplingDefaultsChoice,
    SpeculativeOpt,
    app,
    sampling_defaults_help,
)
from lmlab.models import DEFAULT_ENCODER, DEFAULT_LM


class DtypeChoice(StrEnum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


@app.command()
def serve(
    chat_model: Annotated[str, typer.Option(help="Chat / completion model.")] = DEFAULT_LM,
    embedding_model: Annotated[
        str, typer.Option(help="Embedding model ('' serves none).")
    ] = DEFAULT_ENCODER,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Another language model (repeatable).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 opens it to the network.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key: Annotated[
        str | None, typer.Option(envvar="LMLAB_API_KEY", help="Require 'Bearer KEY'.")
    ] = None,
    backend: BackendOpt = BackendChoice.auto,
    parallel: Annotated[int, typer.Option(help="Sequences generated together.")] = 16,
    prefill_chunk: Annotated[
        int,
        typer.Option(
            help="Most prompt tokens read per step: a long prompt is read over several steps "
            "while the others keep streaming."
        ),
    ] = 128,
    max_tokens_limit: Annotated[int, typer.Option(help="Most new tokens per request.")] = 4096,
    threads: Annotated[
        int,
        typer.Option(
            help="Compute threads decoding one sequence alone (0: measured at start: all "
            "cores but one, which the HTTP side then has to itself, unless all cores decode "
            "over 1.1x faster)."
        ),
    ] = 0,
    threads_batch: Annotated[
        int,
        typer.Option(
            "--threads-batch",
            help="Compute threads for prompts and sequences decoding together (0: --threads "
            "if given, else all cores).",
        ),
    ] = 0,
    dtype: Annotated[
        DtypeChoice,
        typer.Option(
            help="Torch backend weights: auto (as stored), or bfloat16 (fastest for many "
            "concurrent streams on a CPU)."
        ),
    ] = DtypeChoice.auto,
    sampling_defaults: Annotated[
        SamplingDefaultsChoice,
        typer.Option(
            "--sampling-defaults",
            help=sampling_defaults_help("the sampling fields a request leaves out")
            + " GET /v1/models lists each model's defaults.",
        ),
    ] = SamplingDefaultsChoice.model,
    fast_embeddings: Annotated[
        bool,
        typer.Option(
            "--fast-embeddings",
            help="Encoders take the fastest path on this CPU (float32, int8 or bfloat16, "
            "measured once) whose vectors keep cosine >= 0.999 to float32.",
        ),
    ] = False,
    speculative: SpeculativeOpt = None,
    draft_model: DraftModelOpt = None,
    num_draft: NumDraftOpt = None,
) -> None:
    """Serve chat, completions and embeddings with OpenAI's API (base_url http://HOST:PORT/v1)."""
    import uvicorn

    from lmlab.errors import LmlabError
    from lmlab.serve.app import ServerConfig, create_app

    if not 1 <= port <= 65535:
        raise LmlabError(f"--port must be in 1..65535, got {port}")
    if parallel < 1:
        raise LmlabError("--parallel must be at least 1")
    if prefill_chunk < 1:
        raise LmlabError("--prefill-chunk must be at least 1")
    if threads < 0 or threads_batch < 0:
        raise LmlabError("--threads and --threads-batch must be 0 (automatic) or more")
    config = ServerConfig(
        chat_models=[chat_model, *(model or [])],
        embedding_models=[embedding_model] if embedding_model else [],
        backend=backend.value,
        api_key=api_key,
        max_tokens_limit=max_tokens_limit,
        parallel=parallel,
        prefill_chunk=prefill_chunk,
        threads=threads or None,
        threads_batch=threads_batch or None,
        dtype=dtype.value,
        sampling_defaults=sampling_defaults.value,
        fast_embeddings=fast_embeddings,
        speculative=speculative.value if speculative is not None else None,
        draft_model=draft_model,
        num_draft=num_draft,
    )
    _check_port(host, port)  # before the models load: a busy port fails at once
    application = create_app(config)
    served = application.state.served
    names = ", ".join(served.names())
    print(f"lmlab serving {names} at http://{host}:{port}/v1  (Ctrl-C stops)")
    print(_how_models_run(served))
    for name, defaults in served.sampling.items():
        print(
            f"{name}: a request that leaves sampling fields out gets {defaults.describe()} "
            f"(source: {defaults.source})"
        )
    for name, engine in served.engines.items():
        if engine.speculation is not None:
            print(f"{name}: a sequence running alone decodes {engine.speculation.describe()}")
    uvicorn.run(application, host=host, port=port, log_level="warning")


def _how_models_run(served) -> str:
    """One line: the weights each language model runs from and the path each encoder takes,
    and whether they were chosen by measurement on this CPU."""
    from lmlab.embed.fast import describe
    from lmlab.measured import measuring

    runs = [f"{name} from {lm.path.name}" for name, lm in served.lms.items() if hasattr(lm, "path")]
    runs += [f"{name} on {describe(encoder)}" for name, encoder in served.encoders.items()]
    how = "measured on this CPU" if measuring() else "fixed defaults: LMLAB_MEASURE=0"
    return f"running {'; '.join(runs) or 'nothing'} ({how}; figures: lmlab models --json)"


def _check_port(host: str, port: int) -> None:
    """Bind the port for a moment, as uvicorn will, before the models load (which takes
    seconds): a port in use is then an immediate one-line error, not a server that loads,
    says it serves, then exits. The socket is closed again and uvicorn binds its own: served
    from a socket handed to it, a lone request took ~58 ms instead of ~12 (measured)."""
    from lmlab.errors import LmlabError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise LmlabError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.close()
