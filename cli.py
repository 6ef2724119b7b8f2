"""Thin entry point: `python cli.py ...` is the same as the `rag` console script."""
from rag.cli import main

if __name__ == "__main__":
    main()
