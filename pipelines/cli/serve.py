"""`conveyor serve`: a registered model on a KServe model server."""

from __future__ import annotations

import os
import re

from components.common.errors import InputError
from components.stages.registry.store import dir_card
from components.stages.serve.predictor import serve
from components.stages.serve.security import ServerSecurity, read_token_file
from pipelines.cli.common import REPOSITORY_TOKEN_ENV


def parse_model_ref(value: str, store: str | None) -> tuple[str | None, str, str]:
    """NAME, NAME@ALIAS_OR_VERSION, or a registry URI .../models/NAME/VERSION -> (store, name, ref)."""
    if "://" in value:
        head, sep, tail = value.partition("/models/")
        parts = tail.strip("/").split("/")
        if not sep or len(parts) != 2:
            raise InputError(f"{value}: expected a registry URI like s3://bucket/models/NAME/VERSION")
        return head, parts[0], parts[1]
    name, _, ref = value.partition("@")
    return store, name, ref or "champion"


def cmd_serve(args) -> int:
    model_dir = None
    if os.path.isdir(args.model):  # a version folder, e.g. /mnt/models from KServe's storage initializer
        model_name = dir_card(args.model)["name"]
        store, name, ref, model_dir = args.store or os.environ.get("CONVEYOR_STORE"), model_name, "", args.model
    else:
        store, name, ref = parse_model_ref(args.model, args.store)
    if args.role not in ("stable", "canary"):  # a default from $CONVEYOR_ROLE is not checked by argparse
        raise InputError(f"--role / $CONVEYOR_ROLE {args.role!r}: expected stable or canary")
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", args.env):
        raise InputError(f"--env / $CONVEYOR_ENV {args.env!r}: expected an environment name like staging or "
                         "production")
    chaos = {"error_rate": args.chaos_error_rate, "delay_ms": args.chaos_delay_ms,
             "flip_labels": args.chaos_flip_labels}
    token = None
    if args.model_repository:
        token = os.environ.get(REPOSITORY_TOKEN_ENV, "")
        if len(token) < 16:
            raise InputError(f"--model-repository needs a token of at least 16 characters in ${REPOSITORY_TOKEN_ENV} "
                             f"(got {len(token)}); it is read from the environment so that ps does not show it")
    security = ServerSecurity(
        tls_cert=args.tls_cert, tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
        auth_token=read_token_file(args.auth_token_file) if args.auth_token_file else None,
        metrics_token=read_token_file(args.metrics_token_file, "--metrics-token-file")
        if args.metrics_token_file else None)
    return serve(store, name, ref, args.port, role=args.role, env=args.env, name=args.name,
                 log_sample_rate=args.log_sample_rate, security=security, log_text=args.log_text,
                 max_batch=args.max_batch, max_chars=args.max_chars, chaos=chaos, access_log=args.access_log,
                 model_dir=model_dir, host=args.host, workers=args.workers, repository_token=token,
                 max_explain_batch=args.max_explain_batch, max_explain_tokens=args.max_explain_tokens)
