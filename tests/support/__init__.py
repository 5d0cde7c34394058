"""Plain helpers the test modules share (no fixtures, no tests): config files and environments, payout
setups, served sandboxes, recorded provider answers, waiting, free ports, the hardening figures."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
