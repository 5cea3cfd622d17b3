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
import shutil
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

# A slow sanitizer build needs more patience (ThreadSanitizer most).
SLOW = 8.0 if "/san-thread" in BUILD else 4.0 if "/san-" in BUILD else 1.0
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

    def __init__(self, *args, model=None, env=None, wait_ready=True, expect_fail=False,
                 exe=None):
        self.log = []
        cmd = [exe or DAEMON, "--host", "127.0.0.1", "--port", "0", "--threads", "1"]
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
                     "edgellm_slots_active", "edgellm_engine_wakeups_total",
                     "edgellm_time_to_first_token_seconds_bucket",
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
        # The terminal chat runs on the same module and prints the reply exactly (greedy, so
        # the same as the module's own request; a sampled reply of a random model can be all
        # whitespace or control characters, which no check of its text could tell from none).
        want = c.chat([{"role": "user", "content": "hello"}], max_tokens=3, temperature=0)
        want = want["choices"][0]["message"]["content"]
        r = subprocess.run([sys.executable, os.path.join(ROOT, "clients/python/chat.py"),
                            "--url", d.url, "--key", "k1", "--max-tokens", "3",
                            "--temperature", "0"],
                           input="hello\n/quit\n", capture_output=True, text=True,
                           timeout=60 * SLOW)
        expect(r.returncode == 0 and r.stdout == want + "\n" and r.stderr == "",
               (r.returncode, r.stdout, r.stderr, want))
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


def long_model():
    return genmodel("long.gguf", "--arch", "llama", "--type", "q8_0", "--seed", "2", "--n-embd",
                    "256", "--n-layer", "4", "--n-head", "4", "--n-head-kv", "2", "--n-ff", "512",
                    "--n-vocab", "512", "--ctx", "4096")


def hist(m, name):
    """(count, sum, {le: cumulative count}) of a Prometheus histogram in d.metrics() output."""
    buckets = {}
    for k, v in m.items():
        g = re.match(name + r'_bucket\{le="([^"]+)"\}$', k)
        if g:
            buckets[g.group(1)] = v
    return m[name + "_count"], m[name + "_sum"], buckets


def streams_match_solo(*flags):
    """Eight streams batched give the texts each gives alone; returns the context's MiB from
    the load log line and the KV cache type it names."""
    # Two engine threads: the batch is split across the pool (and TSan watches it).
    d = Daemon("--slots", "8", "--queue", "16", "--threads", "2", *flags)
    d.wait_log(r"KV cache, context")
    m = next(re.search(r"(f32|fp16) KV cache, context up to ([0-9]+) MiB", x) for x in d.log
             if "KV cache, context" in x)
    kv = (m.group(1), int(m.group(2)))
    # Streams long enough (tens of milliseconds on a fast machine) that all eight are admitted
    # before the first one ends, however the client threads are scheduled.
    base = 120
    try:
        def body(i):
            return {"model": "small", "messages": [{"role": "user", "content": f"story {i}"}],
                    "max_tokens": base + i, "temperature": 0.9, "top_p": 0.95, "seed": 100 + i,
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
        m = d.metrics()
        expect(m["edgellm_batch_sequences_max"] == 1, f"solo requests were batched: {m}")
        steps_solo = m["edgellm_batch_sequences_count"]

        # All eight connect first, then send together, so they overlap in the engine.
        together = {}
        gate = threading.Barrier(8)

        def send(i):
            c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=300 * SLOW)
            try:
                c.connect()
                gate.wait()
                c.request("POST", CHAT, body=json.dumps(body(i)).encode())
                r = c.getresponse()
                together[i] = (r.status, r.read())
            except Exception as e:  # noqa: BLE001 - reported below
                together[i] = (0, repr(e).encode())
            finally:
                c.close()

        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(8):
            st, raw = together[i]
            expect(st == 200 and raw.endswith(b"data: [DONE]\n\n"), raw[-300:])
            t_text, t_n = text_of(raw)
            s_text, s_n = text_of(solo[i][1])
            expect(t_n == base + i, f"stream {i}: {t_n} tokens, want {base + i}")
            expect(t_text == s_text, f"stream {i} differs when batched:\n{t_text!r}\n{s_text!r}")
        m = d.metrics()
        expect(m["edgellm_slots_active"] == 0 and m["edgellm_queue_depth"] == 0, m)
        # Eight sequences went through the weights in one pass, and the whole batch took about
        # as many steps as the longest stream, not the sum of them.
        expect(m["edgellm_batch_sequences_max"] == 8, f"at most "
               f"{m['edgellm_batch_sequences_max']:.0f} sequences per step, want 8")
        steps = m["edgellm_batch_sequences_count"] - steps_solo
        expect(steps < 2 * (base + 7) + 8, f"{steps:.0f} steps for 8 streams batched")
        print(f"    8 streams in {steps:.0f} steps (alone: {steps_solo:.0f} steps)")
    finally:
        expect(d.stop() == 0, "exit status")
    return kv


KV_F16 = []  # parallel_streams_match_solo's (type, MiB), for the f32 run after it


@test
def parallel_streams_match_solo():
    KV_F16[:] = [streams_match_solo()]
    expect(KV_F16[0][0] == "fp16", f"default KV cache {KV_F16[0]}")


@test
def parallel_streams_match_solo_kv_f32():
    """The same with keys and values cached as f32 (--kv-f16=false): batching still changes
    nothing, and the context really holds the f32 cache (named in the load line, and larger)."""
    kind, mib = streams_match_solo("--kv-f16=false")
    expect(kind == "f32", f"--kv-f16=false gave a {kind} KV cache")
    if KV_F16:
        expect(mib > KV_F16[0][1], f"f32 context {mib} MiB, fp16 {KV_F16[0][1]} MiB")


@test
def burst_starts_together():
    """Requests that arrive together start in the same engine step. Four clients connect and
    send streamed completions while the daemon is stopped (SIGSTOP), so that when it runs again
    its loop takes all four in one pass over its connections: they take max_tokens steps of four
    sequences each, not a first step with the first request alone and the others a step later
    (one more step, and a last one with three). Each answer is complete."""
    d = Daemon("--slots", "4", "--threads", "2")
    n = 8
    body = json.dumps({"model": "small", "prompt": [1], "max_tokens": n, "temperature": 0,
                       "logit_bias": NO_EOS, "stream": True}).encode()
    try:
        for burst in range(3):
            m0 = d.metrics()
            conns = [http.client.HTTPConnection("127.0.0.1", d.port, timeout=60 * SLOW)
                     for _ in range(4)]
            os.kill(d.proc.pid, signal.SIGSTOP)
            try:
                for c in conns:
                    c.connect()  # the kernel completes it; the daemon accepts it later
                    c.request("POST", "/v1/completions", body=body,
                              headers={"Content-Type": "application/json"})
            finally:
                os.kill(d.proc.pid, signal.SIGCONT)
            for c in conns:
                r = c.getresponse()
                raw = r.read()
                c.close()
                chunks = data_chunks(raw)
                expect(r.status == 200 and raw.endswith(b"data: [DONE]\n\n"), raw[-300:])
                expect(chunks[-1]["choices"][0]["finish_reason"] == "length", chunks[-1])
            m = d.metrics()
            steps = m["edgellm_batch_sequences_count"] - m0["edgellm_batch_sequences_count"]
            seqs = m["edgellm_batch_sequences_sum"] - m0["edgellm_batch_sequences_sum"]
            expect(steps == n and seqs == 4 * n,
                   f"burst {burst}: four {n}-token requests read together took {steps:.0f} "
                   f"steps of {seqs:.0f} sequences in all, want {n} of four")
        # A connection opened with a request that never sends its own holds that request back
        # for a moment only (the wake-up's timer), not until it sends or times out.
        idle = socket.socket()
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60 * SLOW)
        os.kill(d.proc.pid, signal.SIGSTOP)
        try:
            idle.connect(("127.0.0.1", d.port))
            c.connect()
            c.request("POST", "/v1/completions", headers={"Content-Type": "application/json"},
                      body=json.dumps({"model": "small", "prompt": [1], "max_tokens": 2}).encode())
            t0 = time.time()
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
        r = c.getresponse()
        r.read()
        dt = time.time() - t0
        c.close()
        idle.close()
        expect(r.status == 200 and dt < 1.0 * SLOW,
               f"a request beside a connection that sends nothing: {r.status} after {dt:.3f} s")
        print(f"    beside an idle new connection: answered in {dt * 1000:.1f} ms")
    finally:
        expect(d.stop() == 0, "exit status")


# ---------------------------------------------------------------------------------------------
def disconnect_once(d, stream=True):
    """One stream closed after a few chunks, or a request that does not stream closed while it
    generates (nothing reaches its client before the end: the engine hands it over only then);
    returns (seconds until the cancellation counter moved with the slot freed, the bound those
    seconds must stay under, step seconds)."""
    m = d.metrics()
    before, gen0 = m["edgellm_requests_cancelled_total"], m["edgellm_generated_tokens_total"]
    s = socket.create_connection(("127.0.0.1", d.port))
    body = json.dumps({"model": "long", "messages": OK_MSG, "max_tokens": 4000,
                       "stream": stream, "logit_bias": NO_EOS}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    got = b""
    while stream and got.count(b"data: ") < 4:
        got += s.recv(4096)
    deadline = time.time() + 10 * SLOW
    while not stream and time.time() < deadline:
        m = d.metrics()
        # decoding: past its first token (the counters are the daemon's totals)
        if m["edgellm_slots_active"] == 1 and m["edgellm_generated_tokens_total"] > gen0 + 1:
            break
        time.sleep(0.01)
    # The engine's step time right now (one stream: its inter-token latency), and how long one
    # look at the metrics takes; the bound is made of these.
    rtt = 0.0
    m0 = d.metrics()
    for _ in range(3):
        t = time.time()
        d.metrics()
        rtt = max(rtt, time.time() - t)
    time.sleep(0.05)
    m1 = d.metrics()
    n_itl = m1["edgellm_inter_token_latency_seconds_count"] - m0[
        "edgellm_inter_token_latency_seconds_count"]
    step = (m1["edgellm_inter_token_latency_seconds_sum"] -
            m0["edgellm_inter_token_latency_seconds_sum"]) / max(n_itl, 1)
    expect(n_itl > 0 and m1["edgellm_slots_active"] == 1, m1)
    s.close()
    t0 = time.time()
    # The loop sees the hang-up at once and the engine drops the sequence before its next
    # step: the step in flight, one more for slack, the metric reads, scheduling noise.
    bound = 2 * step + 2 * rtt + 0.02 * SLOW
    while time.time() - t0 < max(bound * 20, 2 * SLOW):
        m = d.metrics()
        if m["edgellm_requests_cancelled_total"] > before and m["edgellm_slots_active"] == 0:
            break
        time.sleep(0.001)
    dt = time.time() - t0
    expect(m["edgellm_requests_cancelled_total"] == before + 1, m)
    expect(m["edgellm_slots_active"] == 0, m)
    gen = m["edgellm_generated_tokens_total"]
    time.sleep(0.1)
    expect(d.metrics()["edgellm_generated_tokens_total"] == gen, "generation stopped")
    return dt, bound, step


@test
def disconnect_cancels():
    d = Daemon("--slots", "2", "--ctx", "4096", "--max-tokens", "4096", model=long_model())
    try:
        # Three rounds; the median must be within the bound (one scheduling hiccup of this
        # shared machine does not decide).
        for stream in (True, False):
            rounds = sorted(disconnect_once(d, stream) for _ in range(3))
            dt, bound, step = rounds[1]
            kind = "stream" if stream else "not streamed"
            print(f"    {kind}: " + "; ".join(f"step {st * 1000:.1f} ms: cancelled after "
                                              f"{t * 1000:.1f} ms (bound {b * 1000:.1f})"
                                              for t, b, st in rounds))
            expect(dt <= bound, f"{kind}: cancelled {dt * 1000:.1f} ms after the disconnect "
                   f"(median of 3), more than {bound * 1000:.1f} ms (step {step * 1000:.1f} ms)")
        expect(d.metrics()["edgellm_generated_tokens_total"] < 6 * 4000, "not cancelled early")
        d.wait_log(r'POST "/v1/chat/completions" 499')
    finally:
        expect(d.stop() == 0, "exit status")


# ---------------------------------------------------------------------------------------------
@test
def queue_full_and_keepalive():
    d = Daemon("--slots", "1", "--queue", "1", "--keepalive", "0.1", "--ctx", "4096",
               "--max-tokens", "4096", model=long_model())
    try:
        # Long enough to hold the one slot for about a second.
        long_body = {"model": "long", "messages": OK_MSG, "max_tokens": int(1500 / SLOW),
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
               model=long_model())
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
    d = Daemon("--ctx", "4096", "--max-tokens", "4096", "--shutdown-grace", str(60 * SLOW),
               model=long_model())
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
        # wrk counts only the requests that end within the run: under the sanitizers a request
        # can take longer than 3 s on a slow host (0 requests in one TSan run), so the run
        # stretches with SLOW.
        r = subprocess.run(["wrk", "-t", "2", "-c", "16", "-d", f"{int(3 * SLOW)}s", "--timeout",
                            f"{int(20 * SLOW)}s", "--latency", "-s", lua,
                            d.url + "/v1/chat/completions"], capture_output=True, text=True,
                           timeout=60 * SLOW)
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
def data_chunks(raw):
    """The JSON objects of an SSE body (without [DONE])."""
    return [json.loads(p) for k, p in sse_events(raw) if k == "data" and p != "[DONE]"]


@test
def chat_n_choices():
    d = Daemon("--slots", "4")
    try:
        req = {"model": "small", "messages": OK_MSG, "n": 3, "max_tokens": 6, "temperature": 1.0,
               "seed": 7, "logit_bias": NO_EOS}
        st, _, raw = d.post(CHAT, req)
        r = json.loads(raw)
        expect(st == 200 and [c["index"] for c in r["choices"]] == [0, 1, 2], raw)
        expect(all(c["finish_reason"] == "length" and c["message"]["role"] == "assistant"
                   for c in r["choices"]), r)
        expect(r["usage"]["completion_tokens"] == 18, r["usage"])
        texts = [c["message"]["content"] for c in r["choices"]]
        expect(len(set(texts)) > 1, f"three samples, all the same: {texts}")

        st, _, raw = d.post(CHAT, dict(req, stream=True,
                                       stream_options={"include_usage": True}))
        expect(st == 200 and raw.endswith(b"data: [DONE]\n\n"), raw[-200:])
        chunks = data_chunks(raw)
        per = {0: [], 1: [], 2: []}
        for ch in chunks[:-1]:
            expect(len(ch["choices"]) == 1, f"one choice per chunk: {ch}")
            c = ch["choices"][0]
            per[c["index"]].append(c)
        for i, cs in per.items():
            expect(cs[0]["delta"].get("role") == "assistant", f"choice {i} starts with the role")
            expect([c["finish_reason"] for c in cs[:-1]] == [None] * (len(cs) - 1) and
                   cs[-1]["finish_reason"] == "length", f"choice {i}: {cs}")
            text = "".join(c["delta"].get("content") or "" for c in cs)
            expect(text == texts[i], f"choice {i} streamed {text!r}, not {texts[i]!r}")
        expect(chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 18,
               chunks[-1])
    finally:
        expect(d.stop() == 0, "exit status")


@test
def streaming_logprobs():
    d = Daemon()
    try:
        req = {"model": "small", "messages": OK_MSG, "max_tokens": 5, "temperature": 0,
               "logprobs": True, "top_logprobs": 2, "logit_bias": NO_EOS}
        st, _, raw = d.post(CHAT, req)
        whole = json.loads(raw)["choices"][0]
        st, _, raw = d.post(CHAT, dict(req, stream=True))
        expect(st == 200 and raw.endswith(b"data: [DONE]\n\n"), raw[-200:])
        entries, text = [], ""
        for ch in data_chunks(raw):
            c = ch["choices"][0]
            text += c["delta"].get("content") or ""
            if c["logprobs"] is not None:
                expect(c["logprobs"]["refusal"] is None, c)
                entries += c["logprobs"]["content"]
        expect(text == whole["message"]["content"], (text, whole))
        expect(len(entries) == 5 and all(len(e["top_logprobs"]) == 2 for e in entries), entries)
        expect([(e["token"], round(e["logprob"], 4)) for e in entries] ==
               [(e["token"], round(e["logprob"], 4)) for e in whole["logprobs"]["content"]],
               "streamed logprobs differ from the non-streamed ones")
        # Greedy: the sampled token is the most likely one.
        expect(all(e["top_logprobs"][0]["logprob"] == e["logprob"] for e in entries), entries)

        # Completions: the parallel arrays, chunk by chunk.
        st, _, raw = d.post("/v1/completions", {
            "model": "small", "prompt": "abc", "max_tokens": 5, "temperature": 0, "logprobs": 2,
            "stream": True, "logit_bias": NO_EOS})
        toks, offs = [], []
        for ch in data_chunks(raw):
            lp = ch["choices"][0]["logprobs"]
            if lp:
                expect(len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"])
                       == len(lp["text_offset"]), lp)
                # A dict keyed by token text: two tokens that render alike (bytes of one
                # incomplete character) share one key, holding the more likely one.
                expect(all(1 <= len(t) <= 2 for t in lp["top_logprobs"]), lp)
                expect(all(max(t.values()) == v
                           for t, v in zip(lp["top_logprobs"], lp["token_logprobs"])), lp)
                toks += lp["tokens"]
                offs += lp["text_offset"]
        expect(len(toks) == 5 and offs[0] == 0 and offs == sorted(offs), (toks, offs))
    finally:
        expect(d.stop() == 0, "exit status")


@test
def stream_interval():
    """Tokens decoded within stream_interval of the last send go out together, but the first
    token goes out at once; what arrives is the same text and tokens; SIGHUP changes the
    interval. A stream sends only when the engine wakes the loop: no more sends than wake-ups
    (the first token, one per interval, the end; edgellm_engine_wakeups_total), also when the
    tokens come much faster than the interval. A request that does not stream wakes the loop
    once, at its end, whatever the interval."""
    tmp = tempfile.mkdtemp(dir=WORK)
    conf = os.path.join(tmp, "edgellmd.conf")
    with open(conf, "w") as f:
        f.write("stream_interval = 0\n")
    d = Daemon("--config", conf, model=long_model())
    n = 200
    req = {"model": "long", "messages": OK_MSG, "max_tokens": n, "temperature": 0,
           "logprobs": True, "logit_bias": NO_EOS}

    def wakeups():
        return d.metrics()["edgellm_engine_wakeups_total"]

    def chunks(tokens=n):
        """Tokens per content chunk of one stream, and the seconds it took."""
        w0 = wakeups()
        t0 = time.time()
        st, _, raw = d.post(CHAT, dict(req, stream=True, max_tokens=tokens))
        took = time.time() - t0
        woke = wakeups() - w0
        expect(st == 200 and raw.endswith(b"data: [DONE]\n\n"), raw[-200:])
        per, text = [], ""
        for ch in data_chunks(raw):
            c = ch["choices"][0]
            if c["logprobs"]:
                per.append(len(c["logprobs"]["content"]))
                text += c["delta"].get("content") or ""
        expect(sum(per) == tokens, (per, tokens))
        expect(tokens != n or text == whole, (per, text, whole))
        # the role chunk and the finish chunk go out with the first token's and the end's sends
        expect(0 < len(per) <= woke, f"{len(per)} sends, {woke} wake-ups")
        return per, took

    def set_interval(seconds):
        def reloads():
            return sum("reload: stream_interval changed" in line for line in d.log)
        before = reloads()
        with open(conf, "w") as f:
            f.write(f"stream_interval = {seconds}\n")
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 30 * SLOW
        while reloads() == before and time.time() < deadline:
            time.sleep(0.02)
        expect(reloads() > before, "no reload: " + "".join(d.log[-10:]))

    try:
        w0 = wakeups()
        st, _, raw = d.post(CHAT, req)
        expect(st == 200, raw[:300])
        whole = json.loads(raw)["choices"][0]["message"]["content"]
        # Interval 0 and 200 tokens, but nothing to send before the end: one wake-up.
        woke = wakeups() - w0
        expect(woke == 1, f"{woke} wake-ups for one request not streamed")
        # Interval 0: a send per step, unless the loop falls behind the engine (then what
        # accumulated goes together), so many sends in all.
        per, _ = chunks()
        expect(len(per) > 10, f"stream_interval 0: {len(per)} sends of {n} tokens: {per}")
        set_interval(1)
        # One second: a wake-up for the first token (sent at once), one per second that passed
        # and one at the end, and one send for each.
        per, took = chunks()
        expect(len(per) <= 2 + took, (per, took))
        expect(per[0] < n // 2, f"first token held back: {per}")
        if took < 1:
            expect(max(per) >= n // 2, f"tokens not held for the interval: {per}")
        # 5 ms, with a token about every 0.1 ms (a sanitizer build is slower, and makes fewer):
        # text decoded after a wake-up's send waits for the next wake-up (sending it as MHD
        # asked for more made 1.5-1.8 times as many sends as intervals here).
        set_interval(0.005)
        for _ in range(3):
            per, took = chunks(int(2000 / SLOW))
            expect(len(per) <= 2 + took / 0.005, (len(per), took))
    finally:
        expect(d.stop() == 0, "exit status")


@test
def slot_sampler_reuse():
    """One slot serves every request, and its sampler is kept from one request to the next
    (sched.c): a request with penalties, a bias and a seed gives the same text after requests
    with other settings and histories used the slot as on a daemon that never served another."""
    def body(**kw):
        b = {"model": "small", "prompt": "once upon a time", "max_tokens": 48,
             "logit_bias": dict(NO_EOS)}
        b.update(kw)
        return b
    probe = body(temperature=0.8, seed=5, presence_penalty=1.5, frequency_penalty=1.0,
                 repetition_penalty=1.3, top_k=0)
    others = [body(temperature=0, frequency_penalty=-1.5, logit_bias={**NO_EOS, "300": 8}),
              body(temperature=1.2, seed=9, presence_penalty=-2, top_p=0.5, max_tokens=80),
              body(temperature=0.8, seed=5, presence_penalty=1.5, frequency_penalty=1.0,
                   repetition_penalty=1.3, top_k=0, prompt="a different prompt")]

    def text(d, b):
        st, _, raw = d.post("/v1/completions", b)
        expect(st == 200, raw[:300])
        return json.loads(raw)["choices"][0]["text"]
    d = Daemon("--slots", "1")
    try:
        fresh = text(d, probe)
    finally:
        expect(d.stop() == 0, "exit status")
    d = Daemon("--slots", "1")
    try:
        for b in others:
            text(d, b)
        again = text(d, probe)
        for b in others[:2]:
            text(d, b)
        last = text(d, probe)
    finally:
        expect(d.stop() == 0, "exit status")
    expect(again == fresh and last == fresh, (fresh, again, last))
    expect(len(set(fresh.split())) > 1, f"a text that penalties do not shape: {fresh!r}")


@test
def finish_reason_stop():
    d = Daemon()
    try:
        # The end-of-sequence token: generation ends at once with "stop" and no tokens.
        st, _, raw = d.post(CHAT, {"model": "small", "messages": OK_MSG, "max_tokens": 10,
                                   "logit_bias": {str(EOS): 100}})
        r = json.loads(raw)
        expect(r["choices"][0]["finish_reason"] == "stop" and
               r["choices"][0]["message"]["content"] == "" and
               r["usage"]["completion_tokens"] == 0, r)
        st, _, raw = d.post(CHAT, {"model": "small", "messages": OK_MSG, "max_tokens": 10,
                                   "logit_bias": {str(EOS): 100}, "stream": True})
        chunks = data_chunks(raw)
        expect(chunks[-1]["choices"][0]["finish_reason"] == "stop", chunks)

        # A stop string taken from the greedy output: the text ends right before it.
        req = {"model": "small", "prompt": "hello", "max_tokens": 24, "temperature": 0,
               "logit_bias": NO_EOS}
        full = json.loads(d.post("/v1/completions", req)[2])["choices"][0]["text"]
        words = [w for w in re.finditer(r"[A-Za-z]{2,}", full) if w.start() > 0]
        expect(words, f"no word to stop at in {full!r}")
        stop = words[0].group(0)
        want = full[:full.index(stop)]
        r = json.loads(d.post("/v1/completions", dict(req, stop=["@@never@@", stop]))[2])
        c = r["choices"][0]
        expect(c["finish_reason"] == "stop" and c["text"] == want,
               f"stop {stop!r} in {full!r}: got {c}")
        expect(r["usage"]["completion_tokens"] < 24, r["usage"])
        st, _, raw = d.post("/v1/completions", dict(req, stop=stop, stream=True))
        chunks = data_chunks(raw)
        text = "".join(ch["choices"][0]["text"] for ch in chunks)
        expect(text == want and chunks[-1]["choices"][0]["finish_reason"] == "stop",
               (text, want, chunks[-1]))
        # The same through chat.
        creq = {"model": "small", "messages": OK_MSG, "max_tokens": 24, "temperature": 0,
                "logit_bias": NO_EOS}
        full = json.loads(d.post(CHAT, creq)[2])["choices"][0]["message"]["content"]
        words = [w for w in re.finditer(r"[A-Za-z]{2,}", full) if w.start() > 0]
        if words:
            stop = words[0].group(0)
            c = json.loads(d.post(CHAT, dict(creq, stop=stop))[2])["choices"][0]
            expect(c["finish_reason"] == "stop" and
                   c["message"]["content"] == full[:full.index(stop)], (stop, full, c))
    finally:
        expect(d.stop() == 0, "exit status")


@test
def greedy_text_matches_cli():
    """The daemon and `edgellm run` give the same greedy text for the same prompt on the bundled
    model: a completion continues its prompt, so it keeps the first token's leading space
    (" the laws" after "... created"); a chat answer starts a text of its own and does not."""
    model = os.path.join(ROOT, "models", "default.gguf")
    expect(os.path.exists(model), "models/default.gguf is missing")
    cli = os.path.join(BUILD, "edgellm")
    prompt = "In the beginning God created"
    want = subprocess.run([cli, "run", "-m", model, "-p", prompt, "-n", "6", "--temp", "0"],
                          check=True, text=True, capture_output=True).stdout
    want_chat = subprocess.run([cli, "run", "-m", model, "--chat", "-n", "6", "--temp", "0"],
                               input="Who are you?\n", check=True, text=True,
                               capture_output=True).stdout
    d = Daemon(model=model)
    try:
        r = json.loads(d.post("/v1/completions", {"model": "default", "prompt": prompt,
                                                  "max_tokens": 6, "temperature": 0})[2])
        got = r["choices"][0]["text"]
        expect(got.startswith(" ") and got == want.rstrip("\n")[:len(got)] and len(got) > 3,
               f"completion {got!r}, edgellm run {want!r}")
        r = json.loads(d.post(CHAT, {"model": "default", "max_tokens": 6, "temperature": 0,
                                     "messages": [{"role": "user", "content": "Who are you?"}]})[2])
        got = r["choices"][0]["message"]["content"]
        expect(not got.startswith(" ") and got == want_chat.strip()[:len(got)] and len(got) > 3,
               f"chat {got!r}, edgellm run --chat {want_chat!r}")
    finally:
        expect(d.stop() == 0, "exit status")


@test
def metrics_histograms():
    d = Daemon()
    try:
        m = d.metrics()
        for name in ("edgellm_time_to_first_token_seconds", "edgellm_inter_token_latency_seconds",
                     "edgellm_request_duration_seconds", "edgellm_batch_sequences"):
            expect(hist(m, name)[0] == 0, f"{name} not empty at start")
        k, n = 3, 5
        for i in range(k):
            st, _, raw = d.post(CHAT, {"model": "small", "messages": OK_MSG, "max_tokens": n,
                                       "logit_bias": NO_EOS, "stream": i == 0})
            expect(st == 200, raw)
        deadline = time.time() + 5 * SLOW
        while time.time() < deadline:
            m = d.metrics()
            if hist(m, "edgellm_request_duration_seconds")[0] == k:
                break
            time.sleep(0.01)
        want = {"edgellm_time_to_first_token_seconds": k,  # one first token per request
                "edgellm_inter_token_latency_seconds": k * (n - 1),
                "edgellm_request_duration_seconds": k}
        for name, count in want.items():
            c, total, buckets = hist(m, name)
            expect(c == count, f"{name}_count = {c}, want {count}")
            expect(total > 0, f"{name}_sum = {total}")
            vals = [buckets[le] for le in sorted(buckets, key=lambda x: float(x))]
            expect(vals == sorted(vals) and buckets["+Inf"] == c, f"{name} buckets: {buckets}")
        # Every step of these requests ran one sequence.
        c, total, buckets = hist(m, "edgellm_batch_sequences")
        expect(c >= k * n and total == c and buckets["1"] == c, (c, total, buckets))
        expect(m["edgellm_generated_tokens_total"] == k * n, m)
    finally:
        expect(d.stop() == 0, "exit status")


@test
def curl_scripts():
    """clients/curl/*.sh against a daemon with an API key: each runs and gets what it shows."""
    d = Daemon("--api-keys", "curl-key")
    try:
        env = dict(os.environ, EDGELLM_URL=d.url, EDGELLM_API_KEY="curl-key")
        env.pop("EDGELLM_MODEL", None)
        want = {
            "health.sh": ['"status":"ok"'],
            "models.sh": ['"object":"list"', '"id":"small"'],
            "chat.sh": ['"object":"chat.completion"'],
            "chat_stream.sh": ['"object":"chat.completion.chunk"', '"usage":{', "data: [DONE]"],
            "completions.sh": ['"object":"text_completion"', '"token_logprobs"'],
            "completions_stream.sh": ['"object":"text_completion"', "data: [DONE]"],
            "tokenize.sh": ['"tokens":[', '"piece"', '"content"'],
            "metrics.sh": ["edgellm_requests_total", "edgellm_time_to_first_token_seconds"],
            "errors.sh": ['"code":"model_not_found"', '"code":"invalid_api_key"',
                          '"type":"invalid_request_error"'],
        }
        scripts = sorted(f for f in os.listdir(os.path.join(ROOT, "clients", "curl"))
                         if f.endswith(".sh") and f != "common.sh")
        expect(sorted(want) == scripts, f"scripts without a check: {scripts}")
        for name in scripts:
            r = subprocess.run(["sh", os.path.join(ROOT, "clients", "curl", name)], env=env,
                               capture_output=True, text=True, timeout=120 * SLOW)
            expect(r.returncode == 0 and not r.stderr, f"{name}: {r.returncode} {r.stderr}")
            for w in want[name]:
                expect(w in r.stdout, f"{name}: {w!r} not in its output:\n{r.stdout[:600]}")
    finally:
        expect(d.stop() == 0, "exit status")


@test
def shutdown_grace_expiry():
    d = Daemon("--slots", "2", "--ctx", "4096", "--max-tokens", "4096", "--shutdown-grace", "0.5",
               model=long_model())
    out = {}
    body = {"model": "long", "messages": OK_MSG, "max_tokens": 4000, "logit_bias": NO_EOS}
    ts = [threading.Thread(target=stream_request, args=(d.port, dict(body, stream=True), out,
                                                        "stream")),
          threading.Thread(target=stream_request, args=(d.port, body, out, "plain"))]
    for t in ts:
        t.start()
    deadline = time.time() + 10 * SLOW
    while d.metrics()["edgellm_slots_active"] < 2 and time.time() < deadline:
        time.sleep(0.01)
    t0 = time.time()
    d.proc.send_signal(signal.SIGTERM)
    d.wait_log(r"shutdown_grace over: cancelling 2 request\(s\)")
    for t in ts:
        t.join()
    rc = d.stop()
    dt = time.time() - t0
    # Both in-flight requests are told why they ended; the daemon exits 0 soon after the grace.
    st, raw = out["stream"]
    events = data_chunks(raw)
    expect(st == 200 and not raw.endswith(b"data: [DONE]\n\n"), raw[-200:])
    expect(len(events) > 2 and events[-1]["error"]["code"] == "shutting_down", events[-2:])
    st, raw = out["plain"]
    err = json.loads(raw)["error"]
    expect(st == 503 and err["code"] == "shutting_down" and err["type"] == "server_error",
           (st, raw))
    expect(rc == 0, f"exit status {rc}")
    expect(dt < 0.5 + 5 * SLOW, f"exited {dt:.1f} s after SIGTERM with a 0.5 s grace")
    print(f"    exited {dt:.2f} s after SIGTERM (shutdown_grace 0.5 s)")


@test
def health_while_loading():
    """The model file is a FIFO: the engine thread blocks opening it, so the daemon stays in the
    loading state for as long as the test likes. Then the load fails, and the daemon says so."""
    tmp = tempfile.mkdtemp(dir=WORK)
    fifo = os.path.join(tmp, "slow.gguf")
    os.mkfifo(fifo)
    d = Daemon(model=fifo, wait_ready=False)
    try:
        st, _, raw = d.http("GET", "/health")
        expect(st == 503 and json.loads(raw)["status"] == "loading", (st, raw))
        st, hdrs, raw = d.http("GET", "/v1/models")
        expect(st == 503 and json.loads(raw)["error"]["code"] == "model_not_ready" and
               hdrs.get("retry-after"), (st, raw))
        st, _, raw = d.post(CHAT, {"model": "slow", "messages": OK_MSG})
        expect(st == 503 and json.loads(raw)["error"]["code"] == "model_not_ready", (st, raw))
        expect(d.metrics()["edgellm_model_loaded"] == 0, "model_loaded gauge")
    finally:
        os.close(os.open(fifo, os.O_WRONLY))  # unblocks the engine thread: not a regular file
    rc = d.proc.wait(30 * SLOW)
    d.reader.join(5)
    log = "".join(d.log)
    expect(rc == 1 and "cannot load model" in log and fifo in log, f"exit {rc}: {log}")


@test
def default_model_fallback():
    """No --model: the daemon serves <prefix>/share/edgellm/default.gguf next to its binary, and
    without one exits 1 naming every place it looked."""
    tmp = tempfile.mkdtemp(prefix="edgellm-default-")  # outside the tree: no models/ above
    try:
        os.makedirs(os.path.join(tmp, "bin"))
        exe = os.path.join(tmp, "bin", "edgellmd")
        shutil.copy2(DAEMON, exe)
        r = subprocess.run([exe, "--port", "0"], capture_output=True, text=True,
                           timeout=30 * SLOW,
                           env={k: v for k, v in os.environ.items()
                                if not k.startswith("EDGELLM_")})
        expect(r.returncode == 1, f"exit {r.returncode}: {r.stderr}")
        for where in (os.path.join(tmp, "bin", "../share/edgellm/default.gguf"),
                      os.path.join(tmp, "bin", "../models/default.gguf")):
            expect(where in r.stderr, f"{where} not named in: {r.stderr}")
        expect("--model" in r.stderr, r.stderr)
        share = os.path.join(tmp, "share", "edgellm")
        os.makedirs(share)
        shutil.copy2(small_model(), os.path.join(share, "default.gguf"))
        d = Daemon(model=False, exe=exe)
        try:
            st, _, raw = d.http("GET", "/v1/models")
            expect(st == 200 and json.loads(raw)["data"][0]["id"] == "default", raw)
            st, _, raw = d.post(CHAT, {"model": "default", "messages": OK_MSG, "max_tokens": 2})
            expect(st == 200, raw)
        finally:
            expect(d.stop() == 0, "exit status")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def eng_cores():
    """Performance cores this process may run on, as the engine counts them (eng_perf_cpus): the
    allowed CPUs of the highest cpu_capacity, one per (package, core)."""
    def attr(c, name, default):
        try:
            with open(f"/sys/devices/system/cpu/cpu{c}/{name}") as f:
                return int(f.read())
        except (OSError, ValueError):
            return default
    cpus = os.sched_getaffinity(0)
    cap = {c: attr(c, "cpu_capacity", -1) for c in cpus}
    top = max(cap.values())
    cores = set()
    for c in cpus:
        if cap[c] != top:
            continue
        core = attr(c, "topology/core_id", -1)
        cores.add((attr(c, "topology/physical_package_id", 0), core) if core >= 0 else ("cpu", c))
    return len(cores)


def single_cpu_threads(pid):
    """{tid: cpu} of the process's threads other than the main (loop) thread held to one CPU."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        if int(tid) == pid:
            continue
        try:
            cpus = os.sched_getaffinity(int(tid))
        except OSError:
            continue
        if len(cpus) == 1:
            out[int(tid)] = next(iter(cpus))
    return out


@test
def loop_thread_placement():
    """With the engine's threads on CPUs of their own (pin_threads, the default), the loop thread
    (the process's main thread) keeps off the engine thread's CPU; with pin_threads off it keeps
    the mask it started with."""
    mine = os.sched_getaffinity(0)
    d = Daemon("--threads", "2")
    try:
        r = d.post("/v1/completions", {"model": "small", "prompt": "hi", "max_tokens": 2})
        expect(r[0] == 200, r)
        pinned = single_cpu_threads(d.proc.pid)
        loop = os.sched_getaffinity(d.proc.pid)
        line = [x for x in d.log if "the loop thread runs on CPU" in x]
        if len(mine) >= 2 and eng_cores() >= 2:
            expect(line, "no placement line:\n" + "".join(d.log))
            m = re.search(r"runs on CPU ([0-9,-]+), off the engine thread's CPU (\d+)", line[0])
            expect(m, line[0])
            named = set()
            for part in m.group(1).split(","):
                lo, _, hi = part.partition("-")
                named |= set(range(int(lo), int(hi or lo) + 1))
            engine_cpu = int(m.group(2))
            expect(loop == named, (loop, named))
            expect(engine_cpu not in loop, (engine_cpu, loop))
            # the engine thread and its worker, each on a CPU of its own, one of them the CPU
            # the loop keeps off
            expect(len(pinned) == 2 and engine_cpu in pinned.values() and
                   len(set(pinned.values())) == 2, pinned)
            expect(loop <= mine and loop, (loop, mine))
            # the handoff (server/wake.c): exactly when the loop shares the one CPU of a worker
            handoff = "hands it the CPU" in line[0]
            shares = len(loop) == 1 and next(iter(loop)) in pinned.values()
            expect(handoff == shares, (line[0], loop, pinned))
            print(f"    loop thread on CPU {sorted(loop)}, engine threads on "
                  f"{sorted(pinned.values())}, handoff {'on' if handoff else 'off'}")
        else:
            expect(not line and loop == mine, (line, loop, mine))
            print(f"    NOTICE: {len(mine)} CPU(s) allowed: nothing to place")
    finally:
        expect(d.stop() == 0, "exit status")
    d = Daemon("--threads", "2", "--pin-threads=false")
    try:
        r = d.post("/v1/completions", {"model": "small", "prompt": "hi", "max_tokens": 2})
        expect(r[0] == 200, r)
        expect(os.sched_getaffinity(d.proc.pid) == mine, os.sched_getaffinity(d.proc.pid))
        expect(not single_cpu_threads(d.proc.pid), single_cpu_threads(d.proc.pid))
        expect(not any("the loop thread runs on CPU" in x for x in d.log), d.log)
    finally:
        expect(d.stop() == 0, "exit status")


@test
def systemd_unit_security():
    unit = os.path.join(ROOT, "systemd", "edgellmd.service")
    if not shutil.which("systemd-analyze"):
        print("    NOTICE: systemd-analyze not installed; the unit's exposure was not checked")
        return
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", unit],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for edgellmd\.service: ([0-9.]+)", r.stdout)
    expect(m, r.stdout[-500:] + r.stderr)
    expect(float(m.group(1)) <= 2.0, f"exposure {m.group(1)} > 2.0:\n{r.stdout}")
    print(f"    systemd-analyze security: exposure {m.group(1)}")


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
