"""``s3fsv access ...`` (grants, tokens, policies), ``s3fsv serve`` (the gateway) and
``s3fsv audit ...`` (the audit trail)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from s3fsv.access import audit as audit_mod
from s3fsv.access import iam as iam_mod
from s3fsv.access import policy
from s3fsv.access.check import decide
from s3fsv.access.connect import command_store, reach
from s3fsv.access.grants import AccessLog
from s3fsv.access.model import LEVELS, check_target
from s3fsv.api import Store
from s3fsv.cli.parser import AddCommand, Commands
from s3fsv.config import endpoint_url, parse_duration, store_url
from s3fsv.errors import UsageError
from s3fsv.store.objects import split_path
from s3fsv.store.refs import check_ref_name

COMMANDS = Commands()
_command = COMMANDS.register

ACCESS_HELP = """Grants are kept in STORE/_access/ as a hash-chained history: every change is a
record, so `s3fsv access history` shows who was allowed what, and when. Levels: read (GetObject and
prefix-limited listing of the repo), upload (PutObject below the principal's upload prefix
only), write (read, plus new objects and the branch refs it may move), admin (everything on
the repo, DeleteObject included). `compile` shows the IAM policies, `apply` pushes them;
`s3fsv serve` hands out short-lived credentials limited to them.

examples:
  s3fsv access grant alice read cams
  s3fsv access grant cam-17 upload cams --prefix incoming/cam-17/ --device
  s3fsv access grant pipeline-detect write detections
  s3fsv access protect detections@main --allow pipeline-detect
  s3fsv access check alice write cams@main        # exit 0 yes, 1 no
  s3fsv access token create cam-17 --out cam-17.token
"""

AUDIT_HELP = """The audit trail is STORE/_audit/log/: one canonical-JSON record per change and per
credential or URL the gateway issues, each in its own write-once slot and chained to the one
before by its SHA-256 (locked in compliance mode where the bucket has Object Lock).

examples:
  s3fsv audit init --retain-days 2555
  s3fsv audit verify
  s3fsv audit log --repo cams --since 7d
"""


def _expiry(text: str) -> timedelta:
    """``--expires``: a span (``parse_duration``) longer than zero."""
    try:
        seconds = parse_duration(text)
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: a token needs a lifetime")
    return timedelta(seconds=seconds)


def add_verbs(add: AddCommand) -> None:
    group = add(
        "access",
        "",
        "grants, protected branches, tokens, and the engine policies they compile to",
        epilog=ACCESS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = group.add_subparsers(title="access commands", metavar="ACTION")
    p = add("grant", "access.grant", group=sub, help="give a principal a level on a repo")
    p.add_argument("principal", metavar="PRINCIPAL", help="a person, device or group")
    p.add_argument("level", choices=LEVELS, metavar="LEVEL", help=" | ".join(LEVELS))
    p.add_argument("repo", metavar="REPO", help="a repo, or _NAMESPACE for records")
    p.add_argument(
        "--prefix",
        metavar="PATH/",
        help="only below this path (upload: the principal's upload prefix, default "
        "incoming/PRINCIPAL/; read, write: checked by s3fsv, not by the engine)",
    )
    p.add_argument(
        "--branch",
        action="append",
        default=[],
        metavar="NAME",
        help="write/admin: only these branches (repeat; default all)",
    )
    p.add_argument("--device", action="store_true", help="the principal is a device")
    p = add("revoke", "access.revoke", group=sub, help="remove grants (takes effect at once)")
    p.add_argument("principal", metavar="PRINCIPAL")
    p.add_argument("level", nargs="?", choices=LEVELS, metavar="LEVEL")
    p.add_argument("repo", nargs="?", metavar="REPO")
    p.add_argument("--prefix", metavar="PATH/", help="only the grant with this prefix")
    p.add_argument("--id", dest="grant_id", metavar="GRANT", help="only this grant (g12)")
    p = add("list", "access.list", group=sub, help="grants, protections, groups and tokens")
    p.add_argument("--principal", metavar="NAME", help="only what applies to NAME")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p = add("protect", "access.protect", group=sub, help="let only named principals move a branch")
    p.add_argument("branch", metavar="REPO@BRANCH")
    p.add_argument("--allow", action="append", default=[], metavar="PRINCIPAL", required=True)
    p = add("unprotect", "access.unprotect", group=sub, help="lift a branch's protection")
    p.add_argument("branch", metavar="REPO@BRANCH")
    p = add(
        "group", "access.group", group=sub, help="add principals to or remove them from a group"
    )
    p.add_argument("group", metavar="GROUP")
    p.add_argument("--add", nargs="+", default=[], metavar="PRINCIPAL")
    p.add_argument("--remove", nargs="+", default=[], metavar="PRINCIPAL")
    p = add(
        "check",
        "access.check",
        group=sub,
        help="may PRINCIPAL do ACTION? says yes (exit 0) or no (exit 1) and which rule decided",
    )
    p.add_argument("principal", metavar="PRINCIPAL")
    p.add_argument("action", choices=LEVELS, metavar="ACTION", help=" | ".join(LEVELS))
    p.add_argument("address", metavar="REPO[@BRANCH][:PATH]")
    p = add("compile", "access.compile", group=sub, help="print the IAM policies of the grants")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--session", metavar="PRINCIPAL", help="the gateway's session policy")
    which.add_argument("--ceiling", action="store_true", help="the ceiling role's policy")
    which.add_argument(
        "--gateway-policy", action="store_true", help="the gateway's own session policy"
    )
    p = add("apply", "access.apply", group=sub, help="push users, groups and policies to IAM")
    p.add_argument("--dry-run", action="store_true", help="only say what would change")
    p.add_argument("--name-prefix", default=iam_mod.DEFAULT_PREFIX, help="IAM name prefix")
    p = add("history", "access.history", group=sub, help="every change to the grants, in order")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    token = add("token", "", "gateway tokens (create, revoke, list)", group=sub)
    tsub = token.add_subparsers(title="token commands", metavar="ACTION")
    p = add("create", "access.token.create", group=tsub, help="a new token for a principal")
    p.add_argument("principal", metavar="PRINCIPAL")
    p.add_argument("--expires", type=_expiry, metavar="SPAN", help="e.g. 90d (default never)")
    p.add_argument("--out", metavar="FILE", help="write it to FILE (0600) instead of stdout")
    p = add("revoke", "access.token.revoke", group=tsub, help="refuse a token from now on")
    p.add_argument("token_id", metavar="ID")
    p = add("list", "access.token.list", group=tsub, help="tokens (never their secrets)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = add(
        "serve",
        "serve",
        "run the access gateway: short-lived scoped credentials and presigned URLs for tokens",
        epilog="Bind to 127.0.0.1 (the default) behind a TLS reverse proxy; docs/access.md "
        "shows a systemd unit. The gateway's own AWS credentials (standard chain) should be "
        "allowed nothing but sts:AssumeRole on --role-arn.",
    )
    p.add_argument("--role-arn", required=True, metavar="ARN", help="the ceiling role")
    p.add_argument("--listen", default="127.0.0.1:8700", metavar="HOST:PORT")
    p.add_argument("--region", metavar="REGION", help="STS/S3 region (default: the chain's)")
    p.add_argument("--oidc-issuer", metavar="URL", help="accept JWTs from this issuer")
    p.add_argument("--oidc-audience", metavar="AUD", help="their required audience")
    p.add_argument("--oidc-jwks", metavar="FILE|URL", help="the issuer's keys (JWKS)")
    p.add_argument("--oidc-claim", default="sub", help="the claim naming the principal (sub)")

    group = add(
        "audit",
        "",
        "the tamper-evident audit trail (init, verify, log, ingest)",
        epilog=AUDIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = group.add_subparsers(title="audit commands", metavar="ACTION")
    p = add("init", "audit.init", group=sub, help="switch the trail on for this store")
    p.add_argument("--retain-days", type=int, default=audit_mod.DEFAULT_RETAIN_DAYS)
    p = add("verify", "audit.verify", group=sub, help="check every link; name the first broken")
    p.add_argument("--expect", metavar="SEQ:HASH", help="a record noted earlier must be there")
    p = add("log", "audit.log", group=sub, help="who read or wrote what, and when")
    p.add_argument("--repo", metavar="REPO")
    p.add_argument("--principal", metavar="NAME")
    p.add_argument("--since", metavar="TIME", help="2026-05-01, an ISO time, or 90m/12h/7d")
    p.add_argument("--action", metavar="PREFIX", help="e.g. commit, gateway.")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p = add("ingest", "audit.ingest", group=sub, help="fold the engine's request logs in")
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="JSON lines of engine requests (audit receive's, fluentd's, or CloudTrail's); "
        "each file is read from where its last ingest stopped",
    )
    p = add(
        "receive",
        "audit.receive",
        group=sub,
        help="collect SeaweedFS's request log (-s3.auditLogConfig, fluent forward) into a file",
    )
    p.add_argument("--listen", default="127.0.0.1:24224", metavar="HOST:PORT")
    p.add_argument("--out", required=True, metavar="FILE", help="JSON lines, appended (0600)")


def _store(args: argparse.Namespace) -> Store:
    """The store, reached directly: grants and the audit trail are the store owner's."""
    if args.gateway or args.token_file:
        raise UsageError("access and audit commands use the store's own credentials, not a gateway")
    return command_store(reach(args.store, args.endpoint_url, environment=False))


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _repo_branch(text: str) -> tuple[str, str]:
    repo, at, branch = text.partition("@")
    if not at or not branch:
        raise UsageError(f"{text!r}: give REPO@BRANCH")
    return check_target(repo), check_ref_name(branch, "branch")


@_command("access.grant")
def cmd_grant(args: argparse.Namespace) -> int:
    log = AccessLog(_store(args))
    kind = "device" if args.device else None
    grant = log.grant(
        args.principal,
        args.level,
        args.repo,
        prefix=args.prefix,
        branches=tuple(args.branch),
        kind=kind,
    )
    print(f"{grant.id}: {grant.describe()}")
    if grant.prefix and grant.level in ("read", "write"):
        print(
            "s3fsv: note: the engine enforces read and write per repo (objects are shared by "
            "hash); --prefix limits only what s3fsv allows",
            file=sys.stderr,
        )
    return 0


@_command("access.revoke")
def cmd_revoke(args: argparse.Namespace) -> int:
    gone = AccessLog(_store(args)).revoke(
        args.principal, args.level, args.repo, grant_id=args.grant_id, prefix=args.prefix
    )
    for g in gone:
        print(f"revoked {g.id}: {g.describe()}")
    return 0


@_command("access.list")
def cmd_list(args: argparse.Namespace) -> int:
    state = AccessLog(_store(args)).state()
    grants = state.grants_of(args.principal) if args.principal else list(state.grants.values())
    if args.json:
        _print_json(
            {
                "grants": [g.to_json() for g in grants],
                "protected": [p.to_json() for p in state.protections.values()],
                "groups": {g: sorted(state.members.get(g, ())) for g in state.groups()},
                "tokens": [t.to_json() for t in state.tokens.values()],
            }
        )
        return 0
    for g in grants:
        print(f"{g.id:<6} {g.describe()}")
    for p in state.protections.values():
        print(f"{p.id:<6} protect {p.repo}@{p.branch} --allow {' --allow '.join(p.allow)}")
    for group in state.groups():
        print(f"group  {group}: {' '.join(sorted(state.members.get(group, ()))) or '(empty)'}")
    return 0


@_command("access.protect")
def cmd_protect(args: argparse.Namespace) -> int:
    repo, branch = _repo_branch(args.branch)
    AccessLog(_store(args)).protect(repo, branch, args.allow)
    print(f"{repo}@{branch} is protected: only {', '.join(sorted(set(args.allow)))} may move it")
    return 0


@_command("access.unprotect")
def cmd_unprotect(args: argparse.Namespace) -> int:
    repo, branch = _repo_branch(args.branch)
    AccessLog(_store(args)).unprotect(repo, branch)
    print(f"{repo}@{branch} is no longer protected")
    return 0


@_command("access.group")
def cmd_group(args: argparse.Namespace) -> int:
    if not args.add and not args.remove:
        raise UsageError("give --add or --remove")
    log = AccessLog(_store(args))
    log.group(args.group, args.add, args.remove)
    print(f"group {args.group}: {' '.join(sorted(log.state().members.get(args.group, ())))}")
    return 0


@_command("access.check")
def cmd_check(args: argparse.Namespace) -> int:
    head, _, path = args.address.partition(":")
    repo, at, branch = head.partition("@")
    check_target(repo)
    if at:
        check_ref_name(branch, "branch")
    path = "/".join(split_path(path))
    verdict = decide(
        AccessLog(_store(args)).state(), args.principal, args.action, repo, branch or None, path
    )
    print(verdict)
    return 0 if verdict.allowed else 1


@_command("access.compile")
def cmd_compile(args: argparse.Namespace) -> int:
    url = store_url(args.store)
    where = policy.Location.of(url)
    if args.ceiling:
        _print_json(policy.ceiling_policy(where))
    elif args.gateway_policy:
        _print_json(policy.gateway_policy(where))
    else:
        state = AccessLog(_store(args)).state()
        if args.session:
            _print_json(policy.session_policy(state, where, args.session))
        else:
            _print_json(policy.identity_policies(state, where))
    return 0


@_command("access.apply")
def cmd_apply(args: argparse.Namespace) -> int:
    from s3fsv.store.backend.aws import control_client

    store = _store(args)
    where = policy.Location.of(store.url)
    iam = control_client("iam", store.endpoint_url)
    done = iam_mod.apply(
        AccessLog(store).state(), where, iam, prefix=args.name_prefix, dry_run=args.dry_run
    )
    for line in done:
        print(("would " if args.dry_run else "") + line)
    if not done:
        print("IAM already matches the grants", file=sys.stderr)
    elif not args.dry_run:
        store.record_event("access.apply", changes=len(done))
    return 0


@_command("access.history")
def cmd_history(args: argparse.Namespace) -> int:
    changes = AccessLog(_store(args)).history()
    if args.json:
        _print_json(changes)
        return 0
    for c in changes:
        fields = {k: v for k, v in c.items() if k not in _HIDDEN}
        rest = " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in fields.items())
        print(f"{c['seq']:>5} {c['time'][:19]} {c['by']:<12} {c['op']:<13} {rest}")
    return 0


_HIDDEN = {"seq", "time", "by", "op", "prev_hash", "tool", "version", "host", "sha256"}


@_command("access.token.create")
def cmd_token_create(args: argparse.Namespace) -> int:
    token, secret = AccessLog(_store(args)).create_token(args.principal, args.expires)
    until = token.expires or "never"
    if args.out:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secret + "\n")
        os.chmod(args.out, 0o600)
        print(f"token {token.id} for {token.principal} (expires {until}) in {args.out}")
    else:
        print(secret)
        print(f"token {token.id} for {token.principal}, expires {until}", file=sys.stderr)
    return 0


@_command("access.token.revoke")
def cmd_token_revoke(args: argparse.Namespace) -> int:
    token = AccessLog(_store(args)).revoke_token(args.token_id)
    print(f"token {token.id} of {token.principal} is revoked")
    return 0


@_command("access.token.list")
def cmd_token_list(args: argparse.Namespace) -> int:
    tokens = AccessLog(_store(args)).state().tokens.values()
    if args.json:
        _print_json([t.to_json() for t in tokens])
        return 0
    for t in tokens:
        state = "revoked" if t.revoked else f"expires {t.expires or 'never'}"
        print(f"{t.id}  {t.principal:<16} created {t.created[:19]}  {state}")
    return 0


@_command("serve")
def cmd_serve(args: argparse.Namespace) -> int:
    from s3fsv.access.gateway import Gateway, serve
    from s3fsv.access.issuer import IssuerConfig
    from s3fsv.access.oidc import OidcConfig

    host, port = _host_port(args.listen)
    oidc = None
    if args.oidc_issuer or args.oidc_jwks or args.oidc_audience:
        if not (args.oidc_issuer and args.oidc_jwks and args.oidc_audience):
            raise UsageError("OIDC needs --oidc-issuer, --oidc-audience and --oidc-jwks")
        oidc = OidcConfig(args.oidc_issuer, args.oidc_audience, args.oidc_jwks, args.oidc_claim)
    config = IssuerConfig(
        store_url(args.store),
        args.role_arn,
        endpoint_url=endpoint_url(args.endpoint_url),
        region=args.region,
    )
    gateway = Gateway(config, oidc)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"s3fsv: warning: listening on {host}: tokens and credentials cross the network "
            "in clear unless a TLS proxy is in front",
            file=sys.stderr,
        )
    print(f"s3fsv gateway for {config.store_url} on http://{args.listen}", file=sys.stderr)
    serve(gateway, host, port)
    return 0


def _trail(store: Store) -> audit_mod.AuditTrail:
    return audit_mod.AuditTrail(store.records(audit_mod.NAMESPACE))


@_command("audit.init")
def cmd_audit_init(args: argparse.Namespace) -> int:
    rec = _trail(_store(args)).init(args.retain_days)
    locked = "locked (Object Lock, compliance mode)" if rec["detail"]["locked"] else "not locked"
    print(f"audit trail on; records kept {args.retain_days} days, {locked}")
    return 0


@_command("audit.verify")
def cmd_audit_verify(args: argparse.Namespace) -> int:
    expect = None
    if args.expect:
        seq, _, digest = args.expect.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise UsageError("--expect takes SEQ:SHA256, as verify prints it")
        expect = (int(seq), digest)
    verdict = _trail(_store(args)).verify(expect)
    if verdict.ok:
        print(f"ok: {verdict.count} records, head {verdict.count - 1}:{verdict.head}")
        return 0
    print(f"broken at record {verdict.broken_at}: {verdict.reason}")
    print(f"{verdict.count} records before it are intact", file=sys.stderr)
    return 1


@_command("audit.log")
def cmd_audit_log(args: argparse.Namespace) -> int:
    since = audit_mod.parse_since(args.since) if args.since else None
    records = _trail(_store(args)).query(
        repo=args.repo, principal=args.principal, since=since, action=args.action
    )
    if args.json:
        _print_json(records)
    else:
        for line in audit_mod.summarize(records):
            print(line)
    return 0


@_command("audit.receive")
def cmd_audit_receive(args: argparse.Namespace) -> int:
    import signal
    import threading

    from s3fsv.access.ingest import receive

    host, port = _host_port(args.listen)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"receiving on {args.listen} into {args.out} (Ctrl-C stops)", file=sys.stderr)
    receive(host, port, Path(args.out), stop)
    return 0


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"bad address {text!r}: use HOST:PORT")
    return host.strip("[]"), int(port)


@_command("audit.ingest")
def cmd_audit_ingest(args: argparse.Namespace) -> int:
    from s3fsv.access.ingest import ingest_files

    added = ingest_files(_store(args), [Path(f) for f in args.files])
    print(f"folded {added} engine requests into the audit trail")
    return 0
