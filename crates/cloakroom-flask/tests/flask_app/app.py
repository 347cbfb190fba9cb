"""The Flask side of cloakroom-flask's end-to-end test: a tiny app sharing its sessions.

    FLASK_MODE=cookie|redis PORT=5000 SECRET_KEY=... python app.py

cookie: Flask's own signed cookie (SECRET_KEY_FALLBACKS from a comma-separated env var).
redis:  Flask-Session in Redis (REDIS_URL, SESSION_KEY_PREFIX, SESSION_USE_SIGNER=1).
PERMANENT_SESSION_LIFETIME comes from LIFETIME (seconds).
"""

import datetime
import os

from flask import Flask, jsonify, request, session

app = Flask(__name__)
app.secret_key = os.environ["SECRET_KEY"]
app.config["SECRET_KEY_FALLBACKS"] = [k for k in os.environ.get("SECRET_KEY_FALLBACKS", "").split(",") if k]
app.config["PERMANENT_SESSION_LIFETIME"] = datetime.timedelta(seconds=int(os.environ.get("LIFETIME", "3600")))

if os.environ.get("FLASK_MODE") == "redis":
    import redis
    from flask_session import Session

    app.config.update(
        SESSION_TYPE="redis",
        SESSION_REDIS=redis.from_url(os.environ["REDIS_URL"]),
        SESSION_KEY_PREFIX=os.environ.get("SESSION_KEY_PREFIX", "session:"),
        SESSION_USE_SIGNER=os.environ.get("SESSION_USE_SIGNER") == "1",
    )
    Session(app)


@app.post("/login")
def login():
    # What Flask-Login's login_user leaves in the session, plus some data.
    session.permanent = True
    session["_user_id"] = request.args["user"]
    session["_fresh"] = True
    session["cart"] = ["apple"]
    return me()


@app.get("/me")
def me():
    return jsonify(user=session.get("_user_id"), cart=session.get("cart"), counter=session.get("counter"))


@app.post("/counter")
def counter():
    session["counter"] = session.get("counter", 0) + 1
    return me()


@app.post("/logout")
def logout():
    session.clear()
    return me()


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), threaded=True)
