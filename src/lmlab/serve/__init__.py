"""The OpenAI-compatible server: `lmlab serve` (FastAPI + uvicorn)."""
