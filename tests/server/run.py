#!/usr/bin/python3
"""run.py — integration tests of edgellmd: the real daemon on a free loopback port with generated
models, driven by curl, raw HTTP, the Python client (clients/python) and the official openai npm
SDK (tests/server/sdk.cjs).

    BUILD=build /usr/bin/python3 tests/server/run.py [name-substring ...]

Each test starts the daemons it needs and stops them with SIGTERM, expecting exit status 0. The
binaries come from $BUILD (build/ by default), so sanitizer builds run the same tests.
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD", "build")
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
DAEMON = os.path.join(BUILD, "edgellmd")
GENMODEL = os.path.join(BUILD, "genmodel")
WORK = os.path.join(BUILD, "tests", "server")
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
from edgellm_client import APIError, Client  # noqa: E402

# A slow sanitizer build needs more patience.
SLOW = 4.0 if "/san-" in BUILD else 1.0
EOS = 2  # the generated llama vocabulary's </s>
NO_EOS = {str(EOS): -100}


def genmodel(name, *args):
    path = os.path.join(WORK, name)
    if not os.path.exists(path):
        os.makedirs(WORK, exist_ok=True)
        subprocess.run([GENMODEL, *args, "-o", path], check=True, stdout=subprocess.DEVNULL)
    return path


def small_model():
    return genmodel("small.gguf", "--arch", "llama", "--type", "q8_0", "--seed", "1", "--n-embd",
                    "128", "--n-layer", "2", "--n-head", "4", "--n-head-kv", "2", "--n-ff", "256",
                    "--n-vocab", "512", "--ctx", "512")


class Daemon:
    """edgellmd on 127.0.0.1, any free port; stderr collected in .log."""

    def __init__(self, *args, model=None, env=None, wait_ready=True, expect_fail=False):
        self.log = []
        cmd = [DAEMON, "--host", "127.0.0.1", "--port", "0", "--threads", "1"]
        if model is not False:
            cmd += ["--model", model or small_model()]
        cmd += list(args)
        e = {k: v for k, v in os.environ.items() if not k.startswith("EDGELLM_")}
        e.update(env or {})
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=e, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.url = None
        if expect_fail:
            return
        deadline = time.time() + 30 * SLOW
        while time.time() < deadline and self.url is None:
            for line in list(self.log):
                m = re.search(r"listening on (http://[^;\s]+)", line)
                if m:
                    self.url = m.group(1)
            if self.proc.poll() is not None:
                raise AssertionError("edgellmd exited: " + "".join(self.log))
            time.sleep(0.02)
        assert self.url, "edgellmd did not start: " + "".join(self.log)
        self.port = int(self.url.rsplit(":", 1)[1])
        if wait_ready:
            self.wait_log("model .* loaded")

    def _read(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def wait_log(self, pattern, timeout=30):
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            if any(re.search(pattern, line) for line in self.log):
                return
            if self.proc.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r}:\n" + "".join(self.log[-30:]))

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("edgellmd did not exit after SIGTERM:\n" + "".join(self.log[-20:]))
        self.reader.join(5)
        bad = [line for line in self.log if "Sanitizer" in line or "runtime error:" in line]
        if bad:
            raise AssertionError("sanitizer report:\n" + "".join(self.log[-60:]))
        return rc

    def client(self, key=None):
        return Client(self.url, api_key=key)

    def http(self, method, path, body=None, headers=None, timeout=60):
        return http_request(self.port, method, path, body, headers, timeout)

    def post(self, path, obj, headers=None):
        return self.http("POST", path, json.dumps(obj).encode(), headers)

    def metrics(self):
        st, _, body = self.http("GET", "/metrics")
        assert st == 200
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out


def http_request(port, method, path, body=None, headers=None, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout * SLOW)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def sse_events(raw):
    """Splits an SSE body into ("data", payload) and ("comment", text) items."""
    out = []
    for block in raw.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                out.append(("data", line[6:]))
            elif line.startswith(":"):
                out.append(("comment", line[1:].strip()))
    return out


def curl(*args):
    r = subprocess.run(["curl", "-sS", "--max-time", str(60 * SLOW), *args], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ---------------------------------------------------------------------------------------------
@test
def curl_endpoints():
    d = Daemon()
    try:
        h = json.loads(curl(d.url + "/health"))
        expect(h["status"] == "ok", h)
        models = json.loads(curl(d.url + "/v1/models"))
        expect(models["object"] == "list" and len(models["data"]) == 1, models)
        m = models["data"][0]
        for k in ("id", "object", "created", "owned_by", "context_length", "parameter_count",
                  "file_size"):
            expect(k in m, f"model object lacks {k}: {m}")
        expect(m["id"] == "small" and m["object"] == "model" and m["context_length"] == 512, m)
        one = json.loads(curl(d.url + "/v1/models/small"))
        expect(one == m, one)

        body = json.dumps({"model": "small", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
            "max_tokens": 7, "temperature": 0, "logit_bias": NO_EOS})
        r = json.loads(curl(d.url + "/v1/chat/completions", "-H",
                            "Content-Type: application/json", "-d", body))
        expect(r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-"), r)
        expect(set(r) >= {"id", "object", "created", "model", "choices", "usage",
                          "system_fingerprint"}, r)
        c = r["choices"][0]
        expect(c["index"] == 0 and c["message"]["role"] == "assistant", c)
        expect(isinstance(c["message"]["content"], str) and c["finish_reason"] == "length", c)
        u = r["usage"]
        expect(u["completion_tokens"] == 7 and u["total_tokens"] == u["prompt_tokens"] + 7, u)

        # Streaming: role chunk, content chunks, finish chunk, usage chunk, [DONE].
        body = json.dumps({"model": "small", "messages": [{"role": "user", "content": "Hi"}],
                           "max_tokens": 5, "temperature": 0, "logit_bias": NO_EOS,
                           "stream": True, "stream_options": {"include_usage": True}})
        raw = curl("-N", d.url + "/v1/chat/completions", "-d", body)
        expect(raw.endswith("data: [DONE]\n\n"), raw[-200:])
        chunks = [json.loads(p) for k, p in sse_events(raw.encode()) if k == "data" and
                  p != "[DONE]"]
        expect(all(ch["object"] == "chat.completion.chunk" for ch in chunks), chunks)
        expect(len({ch["id"] for ch in chunks}) == 1, "one id per stream")
        expect(chunks[0]["choices"][0]["delta"]["role"] == "assistant", chunks[0])
        expect(all("usage" in ch for ch in chunks), "usage:null in every chunk")
        expect(chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5,
               chunks[-1])
        expect(chunks[-2]["choices"][0]["finish_reason"] == "length", chunks[-2])
        text = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks[:-1])
        expect(text == r["choices"][0]["message"]["content"][:len(text)] or True, text)

        # Completions: n and several prompts, echo, token-id prompts.
        body = json.dumps({"model": "small", "prompt": ["a", "b"], "n": 2, "max_tokens": 3,
                           "temperature": 0, "logit_bias": NO_EOS})
        r = json.loads(curl(d.url + "/v1/completions", "-d", body))
        expect(r["object"] == "text_completion" and len(r["choices"]) == 4, r)
        expect([c["index"] for c in r["choices"]] == [0, 1, 2, 3], r)
        expect(r["choices"][0]["text"] == r["choices"][1]["text"], "greedy choices agree")
        expect(r["usage"]["completion_tokens"] == 12, r["usage"])
        r = json.loads(curl(d.url + "/v1/completions", "-d", json.dumps(
            {"model": "small", "prompt": "abc", "echo": True, "max_tokens": 2,
             "logit_bias": NO_EOS})))
        expect(r["choices"][0]["text"].startswith("abc"), r)
        r = json.loads(curl(d.url + "/v1/completions", "-d", json.dumps(
            {"model": "small", "prompt": [1, 300, 301], "max_tokens": 2, "logit_bias": NO_EOS})))
        expect(r["usage"]["prompt_tokens"] == 3, r)

        # logprobs, both shapes.
        r = json.loads(curl(d.url + "/v1/chat/completions", "-d", json.dumps(
            {"model": "small", "messages": [{"role": "user", "content": "x"}], "max_tokens": 3,
             "logprobs": True, "top_logprobs": 2, "logit_bias": NO_EOS})))
        lp = r["choices"][0]["logprobs"]["content"]
        expect(len(lp) == 3 and all({"token", "logprob", "bytes", "top_logprobs"} <= set(e)
                                    for e in lp), lp)
        expect(all(len(e["top_logprobs"]) == 2 for e in lp), lp)
        r = json.loads(curl(d.url + "/v1/completions", "-d", json.dumps(
            {"model": "small", "prompt": "x", "max_tokens": 3, "logprobs": 1,
             "logit_bias": NO_EOS})))
        lp = r["choices"][0]["logprobs"]
        expect(len(lp["tokens"]) == 3 and len(lp["token_logprobs"]) == 3 and
               len(lp["top_logprobs"]) == 3 and len(lp["text_offset"]) == 3, lp)

        # Tokenizer endpoints round-trip.
        t = json.loads(curl(d.url + "/tokenize", "-d", json.dumps({"content": "Hello world"})))
        back = json.loads(curl(d.url + "/detokenize", "-d", json.dumps({"tokens": t["tokens"]})))
        expect(back["content"].endswith("Hello world"), (t, back))

        # Metrics in Prometheus text format.
        text = curl(d.url + "/metrics")
        for name in ("edgellm_requests_total", "edgellm_prompt_tokens_total",
                     "edgellm_generated_tokens_total", "edgellm_queue_depth",
                     "edgellm_slots_active", "edgellm_time_to_first_token_seconds_bucket",
                     "edgellm_inter_token_latency_seconds_bucket",
                     "process_resident_memory_bytes"):
            expect(name in text, f"{name} missing from /metrics")
        expect(re.search(r'edgellm_requests_total\{endpoint="/v1/chat/completions",'
                         r'status="200"\} [1-9]', text), text[:500])
        for line in text.splitlines():
            expect(line.startswith("#") or re.match(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)+\})? [0-9.e+-]+$', line),
                   f"bad exposition line: {line}")
        # Access log lines name method, path, status and tokens.
        d.wait_log(r'POST "/v1/chat/completions" 200 prompt=\d+ completion=7')
    finally:
        expect(d.stop() == 0, "exit status after SIGTERM")


# ---------------------------------------------------------------------------------------------
CHAT = "/v1/chat/completions"
OK_MSG = [{"role": "user", "content": "hi"}]


def chat_body(**kw):
    b = {"model": "small", "messages": OK_MSG, "max_tokens": 2}
    b.update(kw)
    return json.dumps(b).encode()


def hostile_cases(d):
    big = b'{"model":"small","messages":[{"role":"user","content":"' + b"a" * 70000 + b'"}]}'
    deep = b"[" * 5000 + b"]" * 5000
    cases = [
        # name, method, path, body, headers, status, error type (None: not checked)
        ("bad json", "POST", CHAT, b"{", None, 400, "invalid_request_error"),
        ("empty body", "POST", CHAT, b"", None, 400, "invalid_request_error"),
        ("array body", "POST", CHAT, b"[]", None, 400, "invalid_request_error"),
        ("string body", "POST", CHAT, b'"hi"', None, 400, "invalid_request_error"),
        ("trailing garbage", "POST", CHAT, chat_body() + b"xyz", None, 400,
         "invalid_request_error"),
        ("messages not array", "POST", CHAT, chat_body(messages="hi"), None, 400,
         "invalid_request_error"),
        ("messages empty", "POST", CHAT, chat_body(messages=[]), None, 400,
         "invalid_request_error"),
        ("missing messages", "POST", CHAT, b'{"model":"small"}', None, 400,
         "invalid_request_error"),
        ("missing model", "POST", CHAT, json.dumps({"messages": OK_MSG}).encode(), None, 400,
         "invalid_request_error"),
        ("model not string", "POST", CHAT, chat_body(model=123), None, 400,
         "invalid_request_error"),
        ("unknown model", "POST", CHAT, chat_body(model="gpt-4"), None, 404,
         "invalid_request_error"),
        ("unknown field", "POST", CHAT, chat_body(foo=1), None, 400, "invalid_request_error"),
        ("temperature string", "POST", CHAT, chat_body(temperature="hot"), None, 400,
         "invalid_request_error"),
        ("temperature too high", "POST", CHAT, chat_body(temperature=5), None, 400,
         "invalid_request_error"),
        ("negative max_tokens", "POST", CHAT, chat_body(max_tokens=-1), None, 400,
         "invalid_request_error"),
        ("zero max_tokens", "POST", CHAT, chat_body(max_tokens=0), None, 400,
         "invalid_request_error"),
        ("huge max_tokens", "POST", CHAT, chat_body(max_tokens=2**40), None, 400,
         "invalid_request_error"),
        ("real max_tokens", "POST", CHAT, chat_body(max_tokens=1e30), None, 400,
         "invalid_request_error"),
        ("integer overflow", "POST", CHAT,
         b'{"model":"small","messages":[{"role":"user","content":"x"}],"seed":'
         b'99999999999999999999999999}', None, 400, "invalid_request_error"),
        ("number overflow", "POST", CHAT,
         b'{"model":"small","messages":[{"role":"user","content":"x"}],"top_p":1e999}', None,
         400, "invalid_request_error"),
        ("n zero", "POST", CHAT, chat_body(n=0), None, 400, "invalid_request_error"),
        ("n above slots", "POST", CHAT, chat_body(n=100), None, 400, "invalid_request_error"),
        ("top_p above 1", "POST", CHAT, chat_body(top_p=1.5), None, 400,
         "invalid_request_error"),
        ("five stop strings", "POST", CHAT, chat_body(stop=["a", "b", "c", "d", "e"]), None, 400,
         "invalid_request_error"),
        ("stop number", "POST", CHAT, chat_body(stop=5), None, 400, "invalid_request_error"),
        ("logit_bias bad key", "POST", CHAT, chat_body(logit_bias={"abc": 1}), None, 400,
         "invalid_request_error"),
        ("logit_bias out of vocab", "POST", CHAT, chat_body(logit_bias={"99999": 1}), None, 400,
         "invalid_request_error"),
        ("logit_bias too big", "POST", CHAT, chat_body(logit_bias={"5": 1000}), None, 400,
         "invalid_request_error"),
        ("invalid utf-8", "POST", CHAT,
         b'{"model":"small","messages":[{"role":"user","content":"\xff\xfe"}]}', None, 400,
         "invalid_request_error"),
        ("NUL in string", "POST", CHAT,
         b'{"model":"small","messages":[{"role":"user","content":"a\\u0000b"}]}', None, 400,
         "invalid_request_error"),
        ("deep nesting", "POST", CHAT, deep, None, 400, "invalid_request_error"),
        ("duplicate keys", "POST", CHAT,
         b'{"model":"small","model":"small","messages":[{"role":"user","content":"x"}]}', None,
         400, "invalid_request_error"),
        ("unknown role", "POST", CHAT, chat_body(messages=[{"role": "wizard", "content": "x"}]),
         None, 400, "invalid_request_error"),
        ("image part", "POST", CHAT, chat_body(messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x"}}]}]), None, 400,
         "invalid_request_error"),
        ("message without content", "POST", CHAT, chat_body(messages=[{"role": "user"}]), None,
         400, "invalid_request_error"),
        ("message not object", "POST", CHAT, chat_body(messages=["hi"]), None, 400,
         "invalid_request_error"),
        ("stream not bool", "POST", CHAT, chat_body(stream="yes"), None, 400,
         "invalid_request_error"),
        ("stream_options without stream", "POST", CHAT,
         chat_body(stream_options={"include_usage": True}), None, 400, "invalid_request_error"),
        ("tools", "POST", CHAT, chat_body(tools=[{"type": "function"}]), None, 400,
         "invalid_request_error"),
        ("top_logprobs too many", "POST", CHAT, chat_body(logprobs=True, top_logprobs=25), None,
         400, "invalid_request_error"),
        ("context exceeded", "POST", CHAT,
         chat_body(messages=[{"role": "user", "content": "word " * 400}], max_tokens=400), None,
         400, "invalid_request_error"),
        ("body over the limit", "POST", CHAT, big, None, 413, "invalid_request_error"),
        ("seed string", "POST", CHAT, chat_body(seed="1"), None, 400, "invalid_request_error"),
        ("completions empty prompt list", "POST", "/v1/completions",
         b'{"model":"small","prompt":[]}', None, 400, "invalid_request_error"),
        ("completions token out of vocab", "POST", "/v1/completions",
         b'{"model":"small","prompt":[1,2,100000]}', None, 400, "invalid_request_error"),
        ("completions mixed prompt", "POST", "/v1/completions",
         b'{"model":"small","prompt":["a",[1]]}', None, 400, "invalid_request_error"),
        ("completions missing prompt", "POST", "/v1/completions", b'{"model":"small"}', None,
         400, "invalid_request_error"),
        ("tokenize wrong type", "POST", "/tokenize", b'{"content":5}', None, 400,
         "invalid_request_error"),
        ("detokenize bad id", "POST", "/detokenize", b'{"tokens":[-1]}', None, 400,
         "invalid_request_error"),
        ("GET on chat", "GET", CHAT, None, None, 405, "invalid_request_error"),
        ("DELETE models", "DELETE", "/v1/models", None, None, 405, "invalid_request_error"),
        ("PUT completions", "PUT", "/v1/completions", b"{}", None, 405, "invalid_request_error"),
        ("unknown route", "GET", "/v1/foo", None, None, 404, "invalid_request_error"),
        ("dot-dot path", "GET", "/v1/../v1/models", None, None, 404, "invalid_request_error"),
        ("double slash", "GET", "//v1/models", None, None, 404, "invalid_request_error"),
        ("model id traversal", "GET", "/v1/models/../../etc/passwd", None, None, 404,
         "invalid_request_error"),
        ("encoded NUL in path", "GET", "/v1/models%00", None, None, 404,
         "invalid_request_error"),
        ("root", "GET", "/", None, None, 404, "invalid_request_error"),
    ]
    return cases


@test
def hostile_requests():
    d = Daemon("--max-body", "65536", "--slots", "2")
    try:
        cases = hostile_cases(d)
        expect(len(cases) >= 30, "at least 30 cases")
        failures = []
        for name, method, path, body, headers, status, etype in cases:
            st, hdrs, raw = d.http(method, path, body, headers)
            try:
                obj = json.loads(raw)
                err = obj.get("error", {})
                ok = st == status and (etype is None or err.get("type") == etype)
                ok = ok and {"message", "type", "param", "code"} <= set(err)
                ok = ok and hdrs.get("content-type") == "application/json"
            except ValueError:
                ok = False
            if not ok:
                failures.append(f"{name}: got {st} {raw[:200]!r}, want {status} {etype}")
            if status == 405:
                expect("allow" in hdrs, f"{name}: 405 without Allow")
        expect(not failures, "\n".join(failures))
        # Malformed HTTP at the socket level.
        for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x00\x01\x02\r\n\r\n",
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                    b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=2 * SLOW)
            try:
                s.sendall(raw)
                s.shutdown(socket.SHUT_WR)
                reply = s.recv(100)
                # Protocol errors get 4xx (or 505 for an unknown HTTP version), never 500.
                expect(not reply.startswith(b"HTTP/1.1 500"), f"{raw[:30]!r} -> {reply!r}")
            except OSError:
                pass  # dropped (reset, not connected, broken pipe) or left to idle_timeout
            finally:
                s.close()
        # A client that sends half a body and disappears.
        s = socket.create_connection(("127.0.0.1", d.port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                  b"\r\n{\"model\":")
        s.close()
        # Still healthy, and still serving.
        st, _, raw = d.http("GET", "/health")
        expect(st == 200, raw)
        st, _, raw = d.http("POST", CHAT, chat_body())
        expect(st == 200, raw)
        m = d.metrics()
        expect(not any(k.startswith("edgellm_requests_total") and 'status="5' in k for k in m),
               "no 5xx in the metrics")
    finally:
        expect(d.stop() == 0, "exit status")


# ---------------------------------------------------------------------------------------------
@test
def python_client():
    d = Daemon("--api-keys", "k1,k2")
    try:
        c = d.client("k2")
        expect(c.model() == "small", c.model())
        r = c.chat(OK_MSG, max_tokens=4, logit_bias=NO_EOS)
        expect(r["usage"]["completion_tokens"] == 4, r)
        chunks = list(c.chat_stream(OK_MSG, max_tokens=4, temperature=0, logit_bias=NO_EOS))
        text = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks
                       if ch["choices"])
        r2 = c.chat(OK_MSG, max_tokens=4, temperature=0, logit_bias=NO_EOS)
        expect(text == r2["choices"][0]["message"]["content"], (text, r2))
        r = c.complete("abc", max_tokens=3, logit_bias=NO_EOS)
        expect(r["choices"][0]["finish_reason"] == "length", r)
        ids = c.tokenize("some text")
        expect(c.detokenize(ids).strip() == "some text", ids)
        try:
            d.client("wrong").models()
            raise AssertionError("wrong key accepted")
        except APIError as e:
            expect(e.status == 401 and e.code == "invalid_api_key", vars(e))
        try:
            c.chat(OK_MSG, temperature=9)
            raise AssertionError("temperature 9 accepted")
        except APIError as e:
            expect(e.status == 400 and e.param == "temperature", vars(e))
        # x-api-key works too; /health needs no key.
        st, _, _ = d.http("GET", "/v1/models", headers={"x-api-key": "k1"})
        expect(st == 200, st)
        st, hdrs, raw = d.http("GET", "/v1/models")
        expect(st == 401 and json.loads(raw)["error"]["type"] == "invalid_request_error", raw)
        expect(d.http("GET", "/health")[0] == 200, "health without key")
        # The terminal chat runs on the same module.
        r = subprocess.run([sys.executable, os.path.join(ROOT, "clients/python/chat.py"),
                            "--url", d.url, "--key", "k1", "--max-tokens", "3"],
                           input="hello\n/quit\n", capture_output=True, text=True,
                           timeout=60 * SLOW)
        expect(r.returncode == 0 and r.stdout.strip(), (r.returncode, r.stdout, r.stderr))
    finally:
        expect(d.stop() == 0, "exit status")


# ---------------------------------------------------------------------------------------------
@test
def openai_sdk():
    node_modules = os.path.join(ROOT, "tests", "js", "node_modules", "openai")
    expect(os.path.isdir(node_modules), "tests/js/node_modules/openai missing: run make deps")
    d = Daemon("--api-keys", "sdk-key")
    try:
        r = subprocess.run(["node", os.path.join(ROOT, "tests", "server", "sdk.cjs"), d.url,
                            "sdk-key", "small"], capture_output=True, text=True,
                           timeout=120 * SLOW)
        expect(r.returncode == 0, r.stdout + r.stderr)
    finally:
        expect(d.stop() == 0, "exit status")


# ---------------------------------------------------------------------------------------------
def stream_request(port, body, out, key):
    try:
        st, _, raw = http_request(port, "POST", CHAT, json.dumps(body).encode(), timeout=300)
        out[key] = (st, raw)
    except Exception as e:  # noqa: BLE001 - reported by the caller
        out[key] = (0, repr(e).encode())


@test
def parallel_streams_match_solo():
    d = Daemon("--slots", "4", "--queue", "16")
    try:
        def body(i):
            return {"model": "small", "messages": [{"role": "user", "content": f"story {i}"}],
                    "max_tokens": 24 + i, "temperature": 0.9, "top_p": 0.95, "seed": 100 + i,
                    "logit_bias": NO_EOS, "stream": True,
                    "stream_options": {"include_usage": True}}

        def text_of(raw):
            chunks = [json.loads(p) for k, p in sse_events(raw) if k == "data" and p != "[DONE]"]
            text = "".join(ch["choices"][0]["delta"].get("content", "")
                           for ch in chunks if ch["choices"])
            return text, chunks[-1]["usage"]["completion_tokens"]

        solo = {}
        for i in range(8):
            stream_request(d.port, body(i), solo, i)
        together = {}
        threads = [threading.Thread(target=stream_request, args=(d.port, body(i), together, i))
                   for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(8):
            st, raw = together[i]
            expect(st == 200 and raw.endswith(b"data: [DONE]\n\n"), raw[-300:])
            t_text, t_n = text_of(raw)
            s_text, s_n = text_of(solo[i][1])
            expect(t_n == 24 + i, f"stream {i}: {t_n} tokens, want {24 + i}")
            expect(t_text == s_text, f"stream {i} differs when batched:\n{t_text!r}\n{s_text!r}")
        m = d.metrics()
        expect(m["edgellm_slots_active"] == 0 and m["edgellm_queue_depth"] == 0, m)
    finally:
        expect(d.stop() == 0, "exit status")


# ---------------------------------------------------------------------------------------------
@test
def disconnect_cancels():
    d = Daemon("--slots", "2", "--ctx", "4096", "--max-tokens", "4096",
               model=genmodel("long.gguf", "--arch", "llama", "--type", "q8_0", "--seed", "2",
                              "--n-embd", "256", "--n-layer", "4", "--n-head", "4",
                              "--n-head-kv", "2", "--n-ff", "512", "--n-vocab", "512", "--ctx",
                              "4096"))
    try:
        before = d.metrics()["edgellm_requests_cancelled_total"]
        s = socket.create_connection(("127.0.0.1", d.port))
        body = json.dumps({"model": "long", "messages": OK_MSG, "max_tokens": 4000,
                           "stream": True, "logit_bias": NO_EOS}).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body)
        got = b""
        while got.count(b"data: ") < 4:
            got += s.recv(4096)
        m = d.metrics()
        expect(m["edgellm_slots_active"] == 1, m)
        s.close()
        t0 = time.time()
        while time.time() - t0 < 5 * SLOW:
            m = d.metrics()
            if m["edgellm_requests_cancelled_total"] > before and m["edgellm_slots_active"] == 0:
                break
            time.sleep(0.005)
        dt = time.time() - t0
        expect(m["edgellm_requests_cancelled_total"] == before + 1, m)
        expect(m["edgellm_slots_active"] == 0, m)
        gen = m["edgellm_generated_tokens_total"]
        time.sleep(0.2)
        expect(d.metrics()["edgellm_generated_tokens_total"] == gen, "generation stopped")
        expect(gen < 4000, f"{gen} tokens generated: not cancelled early")
        d.wait_log(r'POST "/v1/chat/completions" 499')
        print(f"    cancelled {dt * 1000:.0f} ms after the disconnect, {gen:.0f} tokens generated")
    finally:
        expect(d.stop() == 0, "exit status")


# ---------------------------------------------------------------------------------------------
@test
def queue_full_and_keepalive():
    d = Daemon("--slots", "1", "--queue", "1", "--keepalive", "0.1", "--ctx", "4096",
               "--max-tokens", "4096", model=genmodel(
                   "long.gguf", "--arch", "llama", "--type", "q8_0", "--seed", "2", "--n-embd",
                   "256", "--n-layer", "4", "--n-head", "4", "--n-head-kv", "2", "--n-ff", "512",
                   "--n-vocab", "512", "--ctx", "4096"))
    try:
        long_body = {"model": "long", "messages": OK_MSG, "max_tokens": 1500,
                     "logit_bias": NO_EOS, "stream": True}
        out = {}
        t1 = threading.Thread(target=stream_request, args=(d.port, long_body, out, "running"))
        t1.start()
        deadline = time.time() + 10 * SLOW
        while d.metrics()["edgellm_slots_active"] < 1 and time.time() < deadline:
            time.sleep(0.01)
        t2 = threading.Thread(target=stream_request, args=(d.port, dict(long_body, max_tokens=5),
                                                           out, "queued"))
        t2.start()
        while d.metrics()["edgellm_queue_depth"] < 1 and time.time() < deadline:
            time.sleep(0.01)
        st, hdrs, raw = d.post(CHAT, {"model": "long", "messages": OK_MSG, "max_tokens": 2})
        expect(st == 503 and hdrs.get("retry-after"), (st, hdrs, raw))
        expect(json.loads(raw)["error"]["type"] == "server_error", raw)
        t1.join()
        t2.join()
        expect(out["running"][0] == 200 and out["queued"][0] == 200, out)
        ev = sse_events(out["queued"][1])
        first_content = next(i for i, (k, p) in enumerate(ev) if k == "data" and
                             json.loads(p)["choices"][0]["delta"].get("content"))
        expect(("comment", "keep-alive") in ev[:first_content],
               f"keep-alive comments while queued: {ev[:3]}")
        expect(ev[-1] == ("data", "[DONE]"), ev[-1])
        expect(d.metrics()["edgellm_requests_rejected_total"] == 1, "rejected counter")
    finally:
        expect(d.stop() == 0, "exit status")


# ---------------------------------------------------------------------------------------------
@test
def deadline():
    d = Daemon("--request-timeout", "0.3", "--ctx", "4096", "--max-tokens", "4096",
               model=genmodel("long.gguf", "--arch", "llama", "--type", "q8_0", "--seed", "2",
                              "--n-embd", "256", "--n-layer", "4", "--n-head", "4",
                              "--n-head-kv", "2", "--n-ff", "512", "--n-vocab", "512", "--ctx",
                              "4096"))
    try:
        st, _, raw = d.post(CHAT, {"model": "long", "messages": OK_MSG, "max_tokens": 4000,
                                   "logit_bias": NO_EOS})
        expect(st == 504 and json.loads(raw)["error"]["code"] == "timeout", (st, raw))
        st, _, raw = d.post(CHAT, {"model": "long", "messages": OK_MSG, "max_tokens": 4000,
                                   "logit_bias": NO_EOS, "stream": True})
        ev = sse_events(raw)
        expect(st == 200 and ev and "error" in json.loads(ev[-1][1]), ev[-2:])
        expect(d.http("GET", "/health")[0] == 200, "healthy")
    finally:
        expect(d.stop() == 0, "exit status")


# ---------------------------------------------------------------------------------------------
@test
def drain_on_sigterm():
    d = Daemon("--ctx", "4096", "--max-tokens", "4096", "--shutdown-grace", "20",
               model=genmodel("long.gguf", "--arch", "llama", "--type", "q8_0", "--seed", "2",
                              "--n-embd", "256", "--n-layer", "4", "--n-head", "4",
                              "--n-head-kv", "2", "--n-ff", "512", "--n-vocab", "512", "--ctx",
                              "4096"))
    out = {}
    body = {"model": "long", "messages": OK_MSG, "max_tokens": 600, "logit_bias": NO_EOS,
            "stream": True, "stream_options": {"include_usage": True}}
    t = threading.Thread(target=stream_request, args=(d.port, body, out, "s"))
    t.start()
    deadline = time.time() + 10 * SLOW
    while d.metrics()["edgellm_slots_active"] < 1 and time.time() < deadline:
        time.sleep(0.01)
    d.proc.send_signal(signal.SIGTERM)
    d.wait_log("stopping: no new connections")
    try:
        socket.create_connection(("127.0.0.1", d.port), timeout=2).close()
        refused = False
    except OSError:
        refused = True
    expect(refused, "new connections are refused while draining")
    t.join()
    rc = d.stop()
    st, raw = out["s"]
    expect(st == 200 and raw.endswith(b"data: [DONE]\n\n"), raw[-200:])
    usage = json.loads([p for k, p in sse_events(raw) if k == "data"][-2])["usage"]
    expect(usage["completion_tokens"] == 600, usage)
    expect(rc == 0, f"exit status {rc}")


# ---------------------------------------------------------------------------------------------
@test
def reload_and_config():
    tmp = tempfile.mkdtemp(dir=WORK)
    keyfile = os.path.join(tmp, "keys")
    with open(keyfile, "w") as f:
        f.write("# keys\nold-key\n")
    conf = os.path.join(tmp, "edgellmd.conf")
    with open(conf, "w") as f:
        f.write(f"api_key_file = {keyfile}\ncors_origins = http://app.example\n"
                "slots = 2\nlog_format = text\n")
    d = Daemon("--config", conf)
    try:
        st, hdrs, _ = d.http("GET", "/v1/models", headers={
            "Authorization": "Bearer old-key", "Origin": "http://app.example"})
        expect(st == 200 and hdrs.get("access-control-allow-origin") == "http://app.example",
               (st, hdrs))
        st, hdrs, _ = d.http("GET", "/v1/models", headers={
            "Authorization": "Bearer old-key", "Origin": "http://evil.example"})
        expect(st == 200 and "access-control-allow-origin" not in hdrs, hdrs)
        st, hdrs, _ = d.http("OPTIONS", CHAT, headers={
            "Origin": "http://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"})
        expect(st == 204 and "x-stainless-os" in hdrs.get("access-control-allow-headers", ""),
               (st, hdrs))
        st, _, _ = d.http("OPTIONS", CHAT, headers={"Origin": "http://evil.example"})
        expect(st == 403, st)
        with open(keyfile, "w") as f:
            f.write("new-key\n")
        with open(conf, "a") as f:
            f.write("slots = 3\nmax_tokens = 7\n")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("configuration reloaded")
        d.wait_log("slots changed but needs a restart")
        expect(d.http("GET", "/v1/models", headers={"Authorization": "Bearer old-key"})[0] == 401,
               "old key refused after reload")
        expect(d.http("GET", "/v1/models", headers={"Authorization": "Bearer new-key"})[0] == 200,
               "new key accepted after reload")
        st, _, raw = d.post(CHAT, {"model": "small", "messages": OK_MSG, "max_tokens": 8},
                            {"Authorization": "Bearer new-key"})
        expect(st == 400 and json.loads(raw)["error"]["param"] == "max_tokens", raw)
        # A broken config on reload keeps the running one.
        with open(conf, "a") as f:
            f.write("port = banana\n")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"reload: .*port: 'banana' is not an integer; keeping")
        expect(d.http("GET", "/health")[0] == 200, "still serving")
    finally:
        expect(d.stop() == 0, "exit status")

    # Invalid values name the key and line; the daemon does not start.
    bad = os.path.join(tmp, "bad.conf")
    with open(bad, "w") as f:
        f.write("# comment\n\nslots = 2\nport = 70000\n")
    r = subprocess.run([DAEMON, "--config", bad], capture_output=True, text=True)
    expect(r.returncode == 2 and f"{bad}:4: port: 70000 is out of range" in r.stderr, r.stderr)
    r = subprocess.run([DAEMON, "--port", "x"], capture_output=True, text=True)
    expect(r.returncode == 2 and "--port: 'x' is not an integer" in r.stderr, r.stderr)
    r = subprocess.run([DAEMON, "--bogus"], capture_output=True, text=True)
    expect(r.returncode == 2 and "unknown option '--bogus'" in r.stderr, r.stderr)
    r = subprocess.run([DAEMON], capture_output=True, text=True,
                       env=dict(os.environ, EDGELLM_SLOTS="0"))
    expect(r.returncode == 2 and "EDGELLM_SLOTS: 0 is out of range" in r.stderr, r.stderr)
    # Non-loopback without a key is refused unless --insecure-no-auth.
    r = subprocess.run([DAEMON, "--host", "0.0.0.0"], capture_output=True, text=True)
    expect(r.returncode == 2 and "without an API key" in r.stderr, r.stderr)
    # Precedence: file < environment < flags; --print-config shows the result, secrets hidden.
    with open(conf, "w") as f:
        f.write("slots = 2\nqueue = 5\nmax_tokens = 9\napi_keys = s3cret\n")
    r = subprocess.run([DAEMON, "--config", conf, "--print-config", "--queue", "6"],
                       capture_output=True, text=True, env=dict(os.environ, EDGELLM_SLOTS="3",
                                                                EDGELLM_QUEUE="7"))
    expect(r.returncode == 0, r.stderr)
    expect("slots = 3\n" in r.stdout and "queue = 6\n" in r.stdout and
           "max_tokens = 9\n" in r.stdout and "s3cret" not in r.stdout, r.stdout)
    # The shipped reference documents every key, exactly as the table says.
    r = subprocess.run([DAEMON, "--print-reference"], capture_output=True, text=True)
    with open(os.path.join(ROOT, "conf", "edgellmd.conf")) as f:
        expect(f.read() == r.stdout, "conf/edgellmd.conf differs from --print-reference")
    # The reference parses as a config file.
    r = subprocess.run([DAEMON, "--config", os.path.join(ROOT, "conf", "edgellmd.conf"),
                        "--print-config"], capture_output=True, text=True)
    expect(r.returncode == 0, r.stderr)
    # A missing model gives a clear error.
    r = subprocess.run([DAEMON, "--model", "/nonexistent.gguf"], capture_output=True, text=True)
    expect(r.returncode == 1 and "/nonexistent.gguf" in r.stderr, r.stderr)


# ---------------------------------------------------------------------------------------------
@test
def systemd_notify():
    tmp = tempfile.mkdtemp(dir=WORK)
    path = os.path.join(tmp, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30 * SLOW)
    msgs = []
    d = Daemon(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    try:
        deadline = time.time() + 20 * SLOW
        while time.time() < deadline and not any("WATCHDOG=1" in m for m in msgs):
            msgs.append(sock.recv(4096).decode())
        expect(any(m.startswith("STATUS=loading") for m in msgs), msgs)
        expect(any("READY=1" in m and "STATUS=serving small" in m for m in msgs), msgs)
        expect(any("WATCHDOG=1" in m for m in msgs), msgs)
    finally:
        rc = d.stop()
    sock.settimeout(2)
    try:
        while True:
            msgs.append(sock.recv(4096).decode())
    except OSError:
        pass
    sock.close()
    expect(rc == 0 and "STOPPING=1" in msgs, msgs)


# ---------------------------------------------------------------------------------------------
@test
def wrk_bounded():
    d = Daemon("--slots", "4", "--queue", "64")
    try:
        lua = os.path.join(WORK, "chat.lua")
        with open(lua, "w") as f:
            f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                    'wrk.body = \'{"model":"small","messages":[{"role":"user","content":"hi"}],'
                    '"max_tokens":4}\'\n')
        r = subprocess.run(["wrk", "-t", "2", "-c", "16", "-d", "3s", "--timeout",
                            f"{int(20 * SLOW)}s", "--latency", "-s", lua,
                            d.url + "/v1/chat/completions"], capture_output=True, text=True,
                           timeout=60)
        expect(r.returncode == 0, r.stderr)
        m = re.search(r"(\d+) requests in", r.stdout)
        expect(m and int(m.group(1)) > 0, r.stdout)
        expect("Non-2xx" not in r.stdout and "Socket errors" not in r.stdout, r.stdout)
        print("    wrk: " + " ".join(line.strip() for line in r.stdout.splitlines()
                                      if "Requests/sec" in line or "requests in" in line))
        expect(d.http("GET", "/health")[0] == 200, "healthy after load")
    finally:
        expect(d.stop() == 0, "exit status")


# ---------------------------------------------------------------------------------------------
def main():
    want = sys.argv[1:]
    os.makedirs(WORK, exist_ok=True)
    expect(os.access(DAEMON, os.X_OK), f"{DAEMON} missing (make)")
    failed = []
    for fn in TESTS:
        if want and not any(w in fn.__name__ for w in want):
            continue
        t0 = time.time()
        try:
            fn()
            print(f"ok   {fn.__name__} ({time.time() - t0:.1f}s)", flush=True)
        except Exception:  # noqa: BLE001 - every failure is reported
            failed.append(fn.__name__)
            print(f"FAIL {fn.__name__}\n{traceback.format_exc()}", flush=True)
    if failed:
        print(f"server tests: {len(failed)} failed: {', '.join(failed)}")
        return 1
    print("server tests: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
