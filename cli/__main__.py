"""``python -m cli`` == ``exsync`` (the supervisor starts its children this way, wherever exsync is installed)."""
from cli import main

main()
