"""edgellm_client — a small client for edgellmd's OpenAI-compatible API, standard library only.

    from edgellm_client import Client
    c = Client("http://127.0.0.1:8080", api_key=None)
    print(c.chat([{"role": "user", "content": "Hello"}])["choices"][0]["message"]["content"])
    for text in c.chat_stream_text([{"role": "user", "content": "Tell me a story"}]):
        print(text, end="", flush=True)

Errors from the server raise APIError (status, type, code, param, message). Streaming yields the
parsed chunk objects of the server-sent events; comments (keep-alives) are skipped.
"""

import http.client
import json
import os
import urllib.parse

__all__ = ["Client", "APIError"]


class APIError(Exception):
    """An error object returned by the server (or a broken response)."""

    def __init__(self, status, message, type=None, code=None, param=None):
        super().__init__(f"{status} {type or 'error'}: {message}")
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param


class Client:
    """One server. Thread-compatible: use one Client per thread."""

    def __init__(self, base_url=None, api_key=None, timeout=600.0):
        base_url = base_url or os.environ.get("EDGELLM_URL", "http://127.0.0.1:8080")
        u = urllib.parse.urlsplit(base_url)
        if u.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL: {base_url}")
        self.scheme = u.scheme
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.prefix = u.path.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("EDGELLM_API_KEY")
        self.timeout = timeout
        self._model = None

    # ---- transport ----

    def _conn(self):
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.timeout)

    def _headers(self, body):
        h = {"Accept": "application/json"}
        if body is not None:
            h["Content-Type"] = "application/json"
        if self.api_key:
            h["Authorization"] = "Bearer " + self.api_key
        return h

    @staticmethod
    def _raise(status, raw):
        try:
            err = json.loads(raw)["error"]
            raise APIError(status, err.get("message", ""), err.get("type"), err.get("code"),
                           err.get("param"))
        except (ValueError, KeyError, TypeError):
            raise APIError(status, raw.decode("utf-8", "replace")[:500]) from None

    def request(self, method, path, body=None):
        """Sends one request; returns the decoded JSON (or text for non-JSON responses)."""
        conn = self._conn()
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, self.prefix + path, body=data, headers=self._headers(body))
            resp = conn.getresponse()
            raw = resp.read()
            if resp.status >= 400:
                self._raise(resp.status, raw)
            if resp.getheader("Content-Type", "").startswith("application/json"):
                return json.loads(raw)
            return raw.decode("utf-8", "replace")
        finally:
            conn.close()

    def stream(self, path, body):
        """POSTs body with stream=true and yields each event's JSON object until [DONE]."""
        conn = self._conn()
        try:
            data = json.dumps(dict(body, stream=True)).encode()
            headers = self._headers(body)
            headers["Accept"] = "text/event-stream"
            conn.request("POST", self.prefix + path, body=data, headers=headers)
            resp = conn.getresponse()
            if resp.status >= 400:
                self._raise(resp.status, resp.read())
            event = []
            while True:
                line = resp.readline()
                if not line:
                    raise APIError(resp.status, "the stream ended without [DONE]")
                line = line.rstrip(b"\r\n")
                if line:
                    if line.startswith(b"data:"):
                        event.append(line[5:].lstrip(b" "))
                    continue  # comments (": keep-alive") and other fields are skipped
                if not event:
                    continue
                payload, event = b"\n".join(event), []
                if payload == b"[DONE]":
                    return
                obj = json.loads(payload)
                if "error" in obj:
                    e = obj["error"]
                    raise APIError(resp.status, e.get("message", ""), e.get("type"),
                                   e.get("code"), e.get("param"))
                yield obj
        finally:
            conn.close()

    # ---- endpoints ----

    def health(self):
        conn = self._conn()
        try:
            conn.request("GET", self.prefix + "/health")
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def models(self):
        return self.request("GET", "/v1/models")["data"]

    def model(self):
        """The id of the first (usually only) served model."""
        if self._model is None:
            self._model = self.models()[0]["id"]
        return self._model

    def chat(self, messages, model=None, **params):
        body = dict(params, model=model or self.model(), messages=messages)
        return self.request("POST", "/v1/chat/completions", body)

    def chat_stream(self, messages, model=None, **params):
        body = dict(params, model=model or self.model(), messages=messages)
        return self.stream("/v1/chat/completions", body)

    def chat_stream_text(self, messages, model=None, **params):
        """Yields the content text of a streamed chat completion as it arrives."""
        for chunk in self.chat_stream(messages, model, **params):
            for choice in chunk.get("choices", []):
                text = choice.get("delta", {}).get("content")
                if text:
                    yield text

    def complete(self, prompt, model=None, **params):
        body = dict(params, model=model or self.model(), prompt=prompt)
        return self.request("POST", "/v1/completions", body)

    def complete_stream(self, prompt, model=None, **params):
        body = dict(params, model=model or self.model(), prompt=prompt)
        return self.stream("/v1/completions", body)

    def tokenize(self, text, add_special=False):
        return self.request("POST", "/tokenize", {"content": text, "add_special": add_special})[
            "tokens"]

    def detokenize(self, tokens):
        return self.request("POST", "/detokenize", {"tokens": tokens})["content"]

    def metrics(self):
        return self.request("GET", "/metrics")
