"""`python -m chatbot`: serve the chatbot on MCP_SERVER_HOST:MCP_SERVER_PORT with uvicorn."""

from __future__ import annotations

import logging
import os
import sys

from chatbot.settings import Settings, SettingsError

log = logging.getLogger("chatbot")


def configure_logging() -> None:
    """The chatbot's log format, shared by every entry point."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def main() -> int:
    configure_logging()
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"chatbot: {exc}", file=sys.stderr)
        return 2
    # Imported only once the settings are valid: a bad variable is reported at once, without
    # first loading the MCP and OpenAI SDKs.
    import uvicorn

    from chatbot.app import create_app

    mode = f"LLM {settings.openrouter_model}" if settings.llm_enabled else "offline interpreter"
    log.info(
        "chatbot starting on %s:%d (environment %s, backend %s, chat via %s)",
        settings.host,
        settings.port,
        settings.environment,
        settings.backend_url,
        mode,
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
