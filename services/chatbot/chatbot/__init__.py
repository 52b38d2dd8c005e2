"""Lumina Todo chatbot: MCP todo tools and a chat endpoint that acts through the backend API."""

__version__ = "0.1.0"
