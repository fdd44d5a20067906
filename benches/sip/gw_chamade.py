"""gw_chamade.py -- gateway adapter: how an agent gets a SIP call's audio from chamade.

The only gateway-specific part of the bench; loadbench.py sees just this interface:

    adapter = Adapter(args, log=print)       # args: argparse namespace (see add_args)
    await adapter.start(on_media)             # on_media(key, media) is awaited per call
        key   : the SIP Call-ID of the inbound call (what the caller put in its INVITE),
                so the driver can pair its SIP leg with the agent leg
        media : object with   .rate (int, Hz)   .frame_bytes (int, one 20 ms PCM16 frame)
                              async .recv() -> bytes | None   (None = call over)
                              async .send(bytes)              (one PCM16-LE frame)
                              async .close()
    await adapter.stop()
    adapter.stats                             # dict, copied into the driver's JSON line

chamade's agent protocol for an inbound SIP call (docs/SIP.md, docs/WEBSOCKET.md):
  1. chamade is registered to the trunk (kamailio) as `gw`; the DID +15550100 is one of
     its numbers. On the INVITE it opens a call in state `ringing` and publishes
     {"type":"call_invite","call_id","sip_call_id",...} on GET /api/events (server-sent
     events, one `data:` line of JSON per event). `sip_call_id` is the INVITE's Call-ID,
     which kamailio passes through unchanged: that is the pairing key.
  2. The agent opens the call WebSocket /api/call/{call_id}/stream?api_key=KEY and sends
     {"type":"audio_config","sample_rate":RATE,"receive":true}; from then on the server
     sends the room's mix-minus (here: the caller) as binary PCM s16le frames of exactly
     20 ms at RATE, 50 a second, and plays whatever binary PCM the agent sends.
  3. Answering, two ways (--answer):
       accept (default): the agent opens the WebSocket and declares its format *first*,
             then POSTs /api/call/{id}/accept. The caller's 200 OK therefore waits for the
             agent (one SSE push, one WebSocket handshake, one HTTP POST), as it does with
             active-call's webhook + control-WebSocket `accept`; the agent hears the call
             from its first RTP packet. Setup time includes the agent's round trips.
       auto: the DID has auto_answer on; chamade answers 200 OK at once and the agent
             joins when it can. Setup time then measures chamade alone (not the agent),
             and the first ~100 ms of the caller's audio reach nobody.
     Both give the agent the call at the same moment (the call_invite push comes before
     the 180). `accept` is the like-for-like comparison with active-call and the default.
Everything dials 127.0.0.1 only. TCP_NODELAY is set on every socket the agent opens.
"""
import asyncio
import json
import socket
import time
import urllib.parse

import websockets

TERMINAL = {"ended", "missed", "refused", "error", "disconnected", "failed"}


def add_args(p):
    g = p.add_argument_group("chamade adapter")
    g.add_argument("--chamade-url", default="http://127.0.0.1:18100", help="chamade's API base URL")
    g.add_argument("--chamade-key", required=True, help="an API key of the DID's owner")
    g.add_argument("--rate", type=int, default=16000,
                   help="PCM rate on the agent WebSocket (chamade's SIP rooms run at 8000)")
    g.add_argument("--answer", choices=("accept", "auto"), default="accept",
                   help="accept: the agent POSTs /accept after its socket is up; "
                        "auto: the DID is auto_answer (set by run_sweep.sh)")
    g.add_argument("--stats-interval-ms", type=int, default=5000,
                   help="ask chamade for call_stats on each socket this often (0 = never)")


def _nodelay(sock):
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class _Media:
    def __init__(self, ws, rate, on_text):
        self.ws = ws
        self.rate = rate
        self.frame_bytes = rate // 50 * 2
        self._on_text = on_text

    async def recv(self):
        while True:
            try:
                m = await self.ws.recv()
            except websockets.ConnectionClosed:
                return None
            if isinstance(m, (bytes, bytearray)):
                return m
            self._on_text(m)

    async def send(self, frame):
        await self.ws.send(frame)

    async def close(self):
        await self.ws.close()


class Adapter:
    def __init__(self, args, log=print):
        self.a = args
        self.log = log
        u = urllib.parse.urlparse(args.chamade_url)
        self.host, self.port = u.hostname, u.port or 80
        self.on_media = None
        self.sse_task = None
        self.call_tasks = []
        self.last_stats = {}          # call_id -> latest call_stats message
        self.t_invite = {}            # call_id -> monotonic time of the call_invite push
        self.invite_to_media_ms = []  # call_invite -> socket up and format declared
        self.accept_ms = []           # POST /accept round trip
        self.states = {}              # terminal call_state -> count
        self.stats = {"answer": args.answer, "rate": args.rate, "invites": 0, "ws_open": 0,
                      "accepts": 0, "accept_errors": 0, "ws_errors": 0, "sse_errors": 0,
                      "sse_lagged": 0, "call_errors": []}

    # --- tiny HTTP/1.1 client (127.0.0.1 only) --------------------------------------
    async def _post(self, path):
        r, w = await asyncio.open_connection(self.host, self.port)
        _nodelay(w.get_extra_info("socket"))
        try:
            w.write(("POST %s HTTP/1.1\r\nHost: %s:%d\r\nX-API-Key: %s\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n" % (path, self.host, self.port, self.a.chamade_key)).encode())
            await w.drain()
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            code = int(head.split(b" ", 2)[1])
            body = await asyncio.wait_for(r.read(), 10)
            return code, body
        finally:
            w.close()

    # --- 1. the event stream ---------------------------------------------------------
    async def _sse(self, ready):
        r, w = await asyncio.open_connection(self.host, self.port)
        _nodelay(w.get_extra_info("socket"))
        w.write(("GET /api/events HTTP/1.1\r\nHost: %s:%d\r\nX-API-Key: %s\r\n"
                 "Accept: text/event-stream\r\n\r\n" % (self.host, self.port, self.a.chamade_key)).encode())
        await w.drain()
        head = (await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)).decode("latin1")
        if " 200 " not in head.split("\r\n")[0]:
            raise RuntimeError("GET /api/events: %s" % head.split("\r\n")[0])
        chunked = "transfer-encoding: chunked" in head.lower()
        ready.set_result(True)
        buf = b""
        try:
            while True:
                if chunked:
                    size_line = await r.readuntil(b"\r\n")
                    n = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if n == 0:
                        break
                    data = await r.readexactly(n + 2)
                    buf += data[:-2]
                else:
                    data = await r.read(65536)
                    if not data:
                        break
                    buf += data
                while b"\n\n" in buf:
                    ev, buf = buf.split(b"\n\n", 1)
                    for ln in ev.split(b"\n"):
                        if ln.startswith(b"data:"):
                            self._on_event(ln[5:].strip())
        finally:
            w.close()

    def _on_event(self, raw):
        try:
            j = json.loads(raw)
        except ValueError:
            return
        if j.get("type") == "lagged":
            self.stats["sse_lagged"] += int(j.get("missed", 0))
        if j.get("type") != "call_invite":
            return
        self.stats["invites"] += 1
        cid = j["call_id"]
        self.t_invite[cid] = time.monotonic()
        self.call_tasks.append(asyncio.ensure_future(self._call(cid, j.get("sip_call_id") or cid)))

    # --- 2./3. one call: socket, format, answer, then hand it to the driver ----------
    def _text(self, cid, m):
        try:
            j = json.loads(m)
        except ValueError:
            return
        t = j.get("type")
        if t == "call_stats":
            self.last_stats[cid] = j
        elif t == "call_state" and j.get("state") in TERMINAL:
            self.states[j["state"]] = self.states.get(j["state"], 0) + 1
        elif t == "call_error":
            if len(self.stats["call_errors"]) < 5:
                self.stats["call_errors"].append(j)

    async def _call(self, cid, key):
        url = "ws://%s:%d/api/call/%s/stream?api_key=%s" % (
            self.host, self.port, urllib.parse.quote(cid, safe=""), self.a.chamade_key)
        try:
            async with websockets.connect(url, max_size=None, ping_interval=None, compression=None,
                                          open_timeout=10) as ws:
                _nodelay(ws.transport.get_extra_info("socket"))
                await ws.send(json.dumps({"type": "audio_config", "sample_rate": self.a.rate,
                                          "receive": True}))
                # wait for the answer to audio_config: from then on frames come at our rate
                deadline = time.monotonic() + 10
                while True:
                    m = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
                    if isinstance(m, str):
                        if json.loads(m).get("type") == "audio_config":
                            break
                        self._text(cid, m)
                if self.a.stats_interval_ms:
                    await ws.send(json.dumps({"type": "call_stats",
                                              "interval_ms": self.a.stats_interval_ms}))
                self.stats["ws_open"] += 1
                self.invite_to_media_ms.append((time.monotonic() - self.t_invite[cid]) * 1000)
                media = _Media(ws, self.a.rate, lambda m: self._text(cid, m))
                agent = asyncio.ensure_future(self.on_media(key, media))
                if self.a.answer == "accept":
                    t0 = time.monotonic()
                    try:
                        code, body = await self._post("/api/call/%s/accept" % urllib.parse.quote(cid, safe=""))
                        if code == 200:
                            self.stats["accepts"] += 1
                            self.accept_ms.append((time.monotonic() - t0) * 1000)
                        else:
                            self.stats["accept_errors"] += 1
                            self.log("accept %s -> %d %s" % (cid, code, body[:200]))
                    except Exception as e:  # noqa
                        self.stats["accept_errors"] += 1
                        self.log("accept %s: %r" % (cid, e))
                await agent
        except Exception as e:  # noqa
            self.stats["ws_errors"] += 1
            self.log("call ws %s: %r" % (cid, e))

    async def start(self, on_media):
        self.on_media = on_media
        ready = asyncio.get_running_loop().create_future()

        async def sse():
            try:
                await self._sse(ready)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa
                self.stats["sse_errors"] += 1
                self.log("event stream: %r" % e)
                if not ready.done():
                    ready.set_exception(e)

        self.sse_task = asyncio.ensure_future(sse())
        await asyncio.wait_for(ready, 10)

    async def stop(self):
        # give the sockets a moment to see call_state/close after the BYEs
        pending = [t for t in self.call_tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=5)
        for t in self.call_tasks:
            if not t.done():
                t.cancel()
        if self.sse_task:
            self.sse_task.cancel()

        def pctl(v, q):
            if not v:
                return None
            v = sorted(v)
            return round(v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))], 2)

        st = list(self.last_stats.values())

        def col(k):
            return [s[k] for s in st if isinstance(s.get(k), (int, float))]

        self.stats.update({
            "invite_to_media_ms_p50": pctl(self.invite_to_media_ms, 50),
            "invite_to_media_ms_p99": pctl(self.invite_to_media_ms, 99),
            "accept_ms_p50": pctl(self.accept_ms, 50),
            "accept_ms_p99": pctl(self.accept_ms, 99),
            "terminal_states": self.states,
            # the last call_stats of each socket (docs/WEBSOCKET.md): agent->caller queue
            "call_stats_n": len(st),
            "queued_ms_p50": pctl(col("queued_ms"), 50),
            "queued_ms_max": max(col("queued_ms"), default=None),
            "underruns_sum": sum(col("underruns")),
            "overruns_sum": sum(col("overruns")),
            "samples_dropped_sum": sum(col("samples_dropped")),
            "return_overruns_sum": sum(col("return_overruns")),
            "return_trimmed_ms_sum": sum(col("return_trimmed_ms")),
            "frames_played_sum": sum(col("frames_played")),
            "frames_received_sum": sum(col("frames_received")),
            "phone_rtp_in_sum": sum(s.get("phone", {}).get("rtp_in", 0) for s in st),
            "phone_rtp_out_sum": sum(s.get("phone", {}).get("rtp_out", 0) for s in st),
            # the room's fast path: frames forwarded as they arrived, and agent frames that
            # missed their tick and left with the next one
            "forwarded_frames_sum": sum(s.get("room", {}).get("forwarded_frames", 0) for s in st),
            "caught_up_frames_sum": sum(s.get("room", {}).get("caught_up_frames", 0) for s in st),
        })
