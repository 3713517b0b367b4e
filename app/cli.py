"""careloop serve | worker | migrate | create-tenant | seed-demo | export-openapi | export-events | verify-audit |
fake-wechat"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
from pathlib import Path

from app.core.logging import configure_logging
from app.core.settings import ProductionMisconfigured, get_settings

log = logging.getLogger("careloop.cli")
ROOT = Path(__file__).resolve().parents[1]
OPENAPI_PATH = ROOT / "openapi" / "openapi.json"


def _urls() -> tuple[str, str]:
    from app.core.embedded import resolve_urls

    return resolve_urls(get_settings())


def _app_url(database_url: str) -> str | None:
    """The login role requests connect as. The embedded server gets a passwordless one made for it;
    a real server uses APP_DATABASE_URL, or (unset) the owner connection switched to the app role."""
    settings = get_settings()
    if settings.app_database_url or settings.database_url:
        return settings.app_database_url
    from app.core.migrate import ensure_app_login

    return asyncio.run(ensure_app_login(database_url))


async def _with_database(database_url: str, work):
    from app.core import db

    db.init_engine(database_url)
    try:
        return await work()
    finally:
        await db.dispose_engine()


async def migrate_database(database_url: str) -> None:
    """The schema, then data that follows the code: preset roles get the permissions a release added."""
    from app.core.migrate import upgrade
    from app.domain.iam.service import sync_preset_roles

    await upgrade(database_url, data_steps=(sync_preset_roles,))


def cmd_migrate(args: argparse.Namespace) -> int:
    database_url, _ = _urls()
    asyncio.run(migrate_database(database_url))
    print("database is at the latest schema")
    return 0


def cmd_create_tenant(args: argparse.Namespace) -> int:
    from app.domain.tenancy.schemas import TENANT_CODE_PATTERN
    from app.seed import create_tenant_with_owner

    if not re.match(TENANT_CODE_PATTERN, args.code):
        print(f"error: tenant code must match {TENANT_CODE_PATTERN}", file=sys.stderr)
        return 1
    if len(args.owner_password) < 8:
        print("error: the owner password needs at least 8 characters", file=sys.stderr)
        return 1
    database_url, _ = _urls()
    from app.core.errors import Conflict

    try:
        tenant = asyncio.run(_with_database(database_url, lambda: create_tenant_with_owner(
            code=args.code, name=args.name, owner_username=args.owner_username, owner_password=args.owner_password)))
    except Conflict as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    print(json.dumps({"tenant_id": str(tenant.id), "code": tenant.code}))
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    from app.seed import seed_demo

    database_url, _ = _urls()
    result = asyncio.run(_with_database(database_url, lambda: seed_demo(if_missing=args.if_missing)))
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def cmd_export_events(args: argparse.Namespace) -> int:
    from app.events_doc import EVENTS_DOC, events_markdown

    target = Path(args.output) if args.output else EVENTS_DOC
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(events_markdown())
    print(f"wrote {target}")
    return 0


def cmd_export_openapi(args: argparse.Namespace) -> int:
    from app.openapi import openapi_json

    target = Path(args.output) if args.output else OPENAPI_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(openapi_json())
    print(f"wrote {target}")
    return 0


def cmd_verify_audit(args: argparse.Namespace) -> int:
    from app.core.audit import verify_chain
    from app.core.db import session_scope
    from app.domain.tenancy.service import get_tenant_by_code

    async def work():
        async with session_scope(system=True) as session:
            tenant = await get_tenant_by_code(session, args.tenant)
            if tenant is None:
                return None
            return await verify_chain(session, tenant.id)

    database_url, _ = _urls()
    report = asyncio.run(_with_database(database_url, work))
    if report is None:
        print(f"error: no tenant {args.tenant!r}", file=sys.stderr)
        return 1
    print(json.dumps(report.__dict__))
    return 0 if report.ok else 2


def cmd_serve(args: argparse.Namespace) -> int:
    import signal

    import uvicorn

    from app.core.embedded import stop_embedded
    from app.main import create_app

    settings = get_settings()
    host, port = args.host or settings.host, args.port or settings.port
    stopping = False

    def on_stop_signal(signum: int, frame) -> None:
        # While serving, uvicorn handles SIGTERM/SIGINT itself (graceful shutdown) and re-raises the
        # signal once done; outside that (and on the re-raise) leave through `finally`, so the embedded
        # PostgreSQL/Redis are stopped: a process killed by a signal's default action skips atexit.
        if not stopping:
            raise SystemExit(0)

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, on_stop_signal)
    try:
        database_url, redis_url = _urls()
        if not args.no_migrate:
            asyncio.run(migrate_database(database_url))
        if args.seed_demo:
            from app.seed import seed_demo

            result = asyncio.run(_with_database(database_url, lambda: seed_demo(if_missing=True)))
            _print_welcome(result, host, port)
        app = create_app(settings, database_url=database_url, redis_url=redis_url,
                         app_database_url=_app_url(database_url))
        uvicorn.run(app, host=host, port=port, log_config=None, proxy_headers=True, forwarded_allow_ips="127.0.0.1")
    finally:
        stopping = True  # a second signal must not cut the servers' shutdown short
        stop_embedded()
    return 0


def _print_welcome(result: dict, host: str, port: int) -> None:
    login = result.get("login", {})
    print(
        f"\n  CareLoop is starting on http://{host}:{port}\n"
        f"  Interactive API docs: http://{host}:{port}/docs   GraphQL: http://{host}:{port}/graphql\n"
        f"  Demo tenant '{login.get('tenant', 'demo')}': sign in at POST /api/v1/auth/token with\n"
        f"    {json.dumps(login)}\n"
        f"  (other demo staff: {', '.join(result.get('staff', []))}; same password)\n",
        flush=True,
    )


def cmd_worker(args: argparse.Namespace) -> int:
    from app.core import db
    from app.workers.runtime import BackgroundWorker

    database_url, redis_url = _urls()
    app_url = _app_url(database_url)

    async def work():
        db.init_engine(database_url, app_url=app_url)
        try:
            await BackgroundWorker(database_url, redis_url).run_forever()
        finally:
            await db.dispose_engine()

    try:
        asyncio.run(work())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_fake_wechat(args: argparse.Namespace) -> int:
    from app.integrations.wechat.fake_pay import FakeWeChatPay, private_pem, public_pem
    from app.integrations.wechat.fake_server import FakeWeChat, serve

    # WeChat Pay's fake beside it, for the same mini-program; its keys go to files CareLoop reads (a PEM
    # does not fit an env var well).
    pay = FakeWeChatPay(appid=FakeWeChat().appid).start(host=args.host, port=args.pay_port)
    keys = get_settings().data_dir / "fake-wechat-pay"
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "merchant-key.pem").write_text(private_pem(pay.merchant_key))
    (keys / "platform-public.pem").write_text(public_pem(pay.platform_key))
    print(f"Fake WeChat Pay on {pay.base_url} — and for payments:\n", flush=True)
    for name, value in {
        "WECHAT_PAY_BASE_URL": pay.base_url, "WECHAT_PAY_MCHID": pay.mchid, "WECHAT_PAY_APPID": pay.appid,
        "WECHAT_PAY_SERIAL_NO": pay.merchant_serial_no, "WECHAT_PAY_API_V3_KEY": pay.api_v3_key,
        "WECHAT_PAY_PRIVATE_KEY_FILE": keys / "merchant-key.pem",
        "WECHAT_PAY_PLATFORM_CERTS": f"{pay.platform_serial_no}:{keys / 'platform-public.pem'}",
        "WECHAT_PAY_NOTIFY_URL": "http://127.0.0.1:8000/api/v1/payments/wechat/notify",
    }.items():
        print(f"  export {name}={value}")
    print("  (the fake marks an order paid when asked: POST /__fake__/pay/{out_trade_no} sends the notification)\n",
          flush=True)
    try:
        serve(host=args.host, port=args.port)
    except KeyboardInterrupt:
        pass
    finally:
        pay.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="careloop", description="CareLoop: clinic and wellness chain backend")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the API (embedded PostgreSQL/Redis when no URLs are set)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations at start")
    serve.add_argument("--seed-demo", action="store_true", help="create the demo tenant if it is missing")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("worker", help="run background jobs and the outbox relay").set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    tenant = sub.add_parser("create-tenant", help="create a tenant with one owner account")
    tenant.add_argument("--code", required=True)
    tenant.add_argument("--name", required=True)
    tenant.add_argument("--owner-username", required=True)
    tenant.add_argument("--owner-password", required=True)
    tenant.set_defaults(func=cmd_create_tenant)

    seed = sub.add_parser("seed-demo", help="create the demo tenant 'demo' with realistic data")
    seed.add_argument("--if-missing", action="store_true", help="do nothing when the demo tenant exists")
    seed.set_defaults(func=cmd_seed_demo)

    export = sub.add_parser("export-openapi", help="write openapi/openapi.json")
    export.add_argument("--output")
    export.set_defaults(func=cmd_export_openapi)

    events = sub.add_parser("export-events", help="write docs/events.md (the outbox topics and their consumers)")
    events.add_argument("--output")
    events.set_defaults(func=cmd_export_events)

    verify = sub.add_parser("verify-audit", help="check a tenant's audit hash chain (exit 2 when broken)")
    verify.add_argument("--tenant", required=True, help="tenant code")
    verify.set_defaults(func=cmd_verify_audit)

    fake = sub.add_parser("fake-wechat", help="serve fake WeChat mini-program, WeCom and WeChat Pay APIs")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=9009)
    fake.add_argument("--pay-port", type=int, default=9010, help="port of the fake WeChat Pay beside it")
    fake.set_defaults(func=cmd_fake_wechat)
    return parser


# Commands that run the product against its data; ENVIRONMENT=production checks their configuration first.
RUNS_THE_PRODUCT = {"serve", "worker", "migrate", "create-tenant", "seed-demo", "verify-audit"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    if settings.production and args.command in RUNS_THE_PRODUCT:
        problems = settings.production_problems()
        if problems:
            print(ProductionMisconfigured(problems), file=sys.stderr)
            return 2
        logging.getLogger("careloop").info(
            "ENVIRONMENT=production: configured keys and servers only; no generated keys, embedded servers "
            "or plain-http webhooks")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
