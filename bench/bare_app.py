"""The ingest baseline: a bare Flask route that reads the same form body and answers 202, nothing else."""
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/webhooks/premium/<exchanger>/<token>")
def receive(exchanger: str, token: str):
    form = request.form
    return jsonify(ok=True, bid_id=form.get("bid_id"), status=form.get("status")), 202
