# The "Python example" of the product documentation (WebSocket Stream → Direct Audio
# Streaming), as printed there, with three substitutions so that it runs against a chamade
# server: the base URL and the API key come from the environment, and the platform is the
# gateway's own `web` rooms (the documentation's example joins a Discord meeting).
# scripts/python-example runs it and checks what it prints.
import asyncio
import json
import os

import httpx
import websockets

API_KEY = os.environ["CHAMADE_KEY"]  # from chamade.io/dashboard
BASE = os.environ["CHAMADE_URL"]  # e.g. http://127.0.0.1:8080
WS_BASE = BASE.replace("http://", "ws://").replace("https://", "wss://")


async def main():
    # 1. Create the call with transcripts disabled (BYO-STT)
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{BASE}/api/call/",
            headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
            json={
                "platform": "web",
                "meeting_url": "",
                "transcripts": False,  # BYO-STT — Chamade pays no STT/TTS
            },
        )
        r.raise_for_status()
        call = r.json()
        call_id = call["call_id"]

    # 2. Open the WebSocket
    url = f"{WS_BASE}/api/call/{call_id}/stream?api_key={API_KEY}"
    async with websockets.connect(url) as ws:
        # 3. Declare your sample rate + opt into receiving audio
        await ws.send(json.dumps({
            "type": "audio_config",
            "sample_rate": 24000,
            "receive": True,
        }))

        async def reader():
            async for msg in ws:
                if isinstance(msg, bytes):
                    # Raw PCM s16le mono @ 24 kHz, 20 ms frames, mix-minus.
                    # Feed this to your STT (Whisper, Deepgram, ...).
                    print(f"audio frame: {len(msg)} bytes", flush=True)
                else:
                    event = json.loads(msg)
                    etype = event.get("type")
                    if etype == "audio_config":
                        print(f"audio_config: {event}", flush=True)
                    elif etype == "call_transcript":
                        print(f'{event["speaker"]} → {event["text"]}', flush=True)
                    elif etype == "call_chat":
                        print(f'chat <{event["sender"]}>: {event["text"]}', flush=True)
                    elif etype == "call_error" and event.get("code") == "bridge_disconnected":
                        print("Bridge dropped — re-create the call.", flush=True)
                        return

        async def writer():
            # Your TTS would produce 24 kHz s16le PCM here. Stub: 1 s of silence.
            pcm_one_second = b"\x00\x00" * 24000  # 24000 samples × 2 bytes
            await ws.send(pcm_one_second)  # binary frame, sent as-is
            await asyncio.sleep(60)  # keep the call alive for the reader

        await asyncio.gather(reader(), writer())


asyncio.run(main())
