"""``python -m pfcon`` serves the API (same as ``pfcon serve``)."""

from pfcon.cli import main

if __name__ == "__main__":
    main(["serve", *__import__("sys").argv[1:]])
