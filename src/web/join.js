// Browser join page of the chamade gateway.
//
// Served at /join/{token}. Flow: GET /join/{token}/info -> getUserMedia (mic,
// no echo cancellation / noise suppression / AGC) -> RTCPeerConnection with a
// sendrecv audio transceiver -> non-trickle offer (ICE gathering, at most 3 s)
// -> WHIP POST {whip_url}?name=... (Bearer token) -> 201 answer + Location.
// Call events come over the WebSocket /join/{token}/ws. Leaving sends
// DELETE {Location}.
//
// For tests and diagnostics the page state is exposed as window.chamade.
'use strict';

(() => {
  const ICE_GATHER_TIMEOUT_MS = 3000;
  const WS_MAX_RETRIES = 5;
  // terminal call states (the room's CallState::is_terminal)
  const ENDED_STATES = new Set(['ended', 'refused', 'missed', 'disconnected', 'error']);

  const $ = (id) => document.getElementById(id);
  const els = {
    title: $('title'),
    subtitle: $('subtitle'),
    agentName: $('agent-name'),
    status: $('status'),
    joinForm: $('join-form'),
    name: $('name'),
    join: $('join'),
    call: $('call'),
    mute: $('mute'),
    leave: $('leave'),
    playAudio: $('play-audio'),
    remote: $('remote'),
    participants: $('participants'),
    chat: $('chat'),
    chatForm: $('chat-form'),
    chatInput: $('chat-input'),
    chatSend: $('chat-send'),
    transcript: $('transcript'),
    transcriptLines: $('transcript-lines'),
  };

  // /join/{token}: the token is the last path segment; the other endpoints
  // hang below that same path (works behind a path prefix too).
  const basePath = location.pathname.replace(/\/+$/, '');
  const rawToken = basePath.slice(basePath.lastIndexOf('/') + 1);
  let token = rawToken;
  try { token = decodeURIComponent(rawToken); } catch { /* keep it raw */ }
  const params = new URLSearchParams(location.search);

  const app = {
    pc: null,
    remoteStream: null,
    localStream: null,
    // idle | ready | connecting | in_call | ended | left | error
    state: 'idle',
    // participant_id -> {participant_id, name, kind}
    participants: new Map(),
    chat: [],          // [{sender, text, pending?}]
    transcript: [],    // ["[Speaker] text", ...]
    ended: false,      // true once this page is out of the call (left, or the call ended)
    resource: null,    // absolute URL of the WHIP resource (Location)
    callState: null,   // last call state reported by the server
    name: null,
    muted: false,
    info: null,
    ws: null,
    error: null,
    deleteStatus: null, // HTTP status of the DELETE sent on leave (0 = network error)
    token,
    join: () => join(),
    leave: () => leave(),
  };
  window.chamade = app;

  let joining = false;
  let joined = false;
  let everConnected = false;
  let callKnownEnded = false;
  let resourceDeleted = false;
  let wsRetries = 0;
  let wsRetryTimer = null;

  // ---------------------------------------------------------------- helpers

  function setStatus(text, kind = 'info') {
    els.status.textContent = text;
    els.status.dataset.kind = kind;
  }

  function authHeaders(extra = {}) {
    return { Authorization: `Bearer ${token}`, ...extra };
  }

  async function errorDetail(resp) {
    let detail = '';
    try {
      const text = await resp.text();
      try {
        const j = JSON.parse(text);
        const d = j && (j.detail ?? j.error ?? j.message);
        detail = typeof d === 'string' ? d : JSON.stringify(d ?? j);
      } catch {
        detail = text.trim().slice(0, 300);
      }
    } catch { /* no body */ }
    return detail || `HTTP ${resp.status} ${resp.statusText || ''}`.trim();
  }

  async function fetchInfo() {
    const resp = await fetch(`${basePath}/info`, {
      headers: { Accept: 'application/json' },
      cache: 'no-store',
    });
    if (!resp.ok) throw new Error(await errorDetail(resp));
    return resp.json();
  }

  function iceServers(list) {
    if (!Array.isArray(list)) return [];
    return list
      .filter((s) => s && (typeof s.urls === 'string' || Array.isArray(s.urls)))
      .map((s) => {
        const out = { urls: s.urls };
        if (s.username != null) out.username = s.username;
        if (s.credential != null) out.credential = s.credential;
        return out;
      });
  }

  function newPeerConnection(list) {
    try {
      return new RTCPeerConnection({ iceServers: iceServers(list) });
    } catch (e) {
      console.warn('ICE server list rejected, continuing without it:', e && e.message);
      return new RTCPeerConnection({ iceServers: [] });
    }
  }

  function iceGatheringDone(pc, timeoutMs) {
    return new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') { resolve(true); return; }
      const check = () => { if (pc.iceGatheringState === 'complete') done(true); };
      const timer = setTimeout(() => done(false), timeoutMs);
      function done(complete) {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        resolve(complete);
      }
      pc.addEventListener('icegatheringstatechange', check);
    });
  }

  function micErrorText(e) {
    switch (e && e.name) {
      case 'NotAllowedError':
      case 'SecurityError':
        return 'Microphone access was denied. Allow the microphone and try again.';
      case 'NotFoundError':
      case 'OverconstrainedError':
        return 'No microphone was found.';
      case 'NotReadableError':
      case 'AbortError':
        return 'The microphone could not be opened (is another application using it?).';
      default:
        return `Microphone error: ${(e && e.message) || e}`;
    }
  }

  function stopMic() {
    if (app.localStream) app.localStream.getTracks().forEach((t) => t.stop());
  }

  // ------------------------------------------------------------ rendering

  function renderParticipants() {
    const items = [...app.participants.values()].map((p) => {
      const li = document.createElement('li');
      if (p.participant_id != null) li.dataset.participantId = String(p.participant_id);
      if (p.kind) li.dataset.kind = p.kind;
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = p.name || 'Unknown';
      li.append(name);
      if (p.kind) {
        const kind = document.createElement('span');
        kind.className = 'kind';
        kind.textContent = p.kind;
        li.append(' ', kind);
      }
      return li;
    });
    els.participants.replaceChildren(...items);
  }

  function chatNode(entry) {
    const p = document.createElement('p');
    if (entry.pending) p.className = 'pending';
    const sender = document.createElement('span');
    sender.className = 'sender';
    sender.textContent = entry.sender || 'Unknown';
    p.append(sender, document.createTextNode(entry.text ?? ''));
    entry.node = p;
    return p;
  }

  function scrollToEnd(el) {
    el.scrollTop = el.scrollHeight;
  }

  function addChat(sender, text, pending = false) {
    if (!pending && sender === app.name) {
      // our own message coming back from the server: confirm the local copy
      const mine = app.chat.find((c) => c.pending && c.text === text);
      if (mine) {
        mine.pending = false;
        if (mine.node) mine.node.classList.remove('pending');
        return;
      }
    }
    const entry = { sender, text, pending };
    app.chat.push(entry);
    els.chat.append(chatNode(entry));
    scrollToEnd(els.chat);
  }

  function setChat(list) {
    app.chat = [];
    els.chat.replaceChildren();
    for (const c of Array.isArray(list) ? list : []) {
      if (!c) continue;
      const entry = { sender: c.sender ?? c.name ?? '', text: c.text ?? '', pending: false };
      app.chat.push(entry);
      els.chat.append(chatNode(entry));
    }
    scrollToEnd(els.chat);
  }

  function transcriptLine(item) {
    if (typeof item === 'string') return item;
    if (item && typeof item === 'object') return `[${item.speaker ?? '?'}] ${item.text ?? ''}`;
    return String(item);
  }

  function addTranscript(line) {
    app.transcript.push(line);
    const p = document.createElement('p');
    p.textContent = line;
    els.transcriptLines.append(p);
    els.transcript.hidden = false;
    scrollToEnd(els.transcriptLines);
  }

  function setTranscript(list) {
    app.transcript = [];
    els.transcriptLines.replaceChildren();
    for (const item of Array.isArray(list) ? list : []) {
      const line = transcriptLine(item);
      app.transcript.push(line);
      const p = document.createElement('p');
      p.textContent = line;
      els.transcriptLines.append(p);
    }
    els.transcript.hidden = app.transcript.length === 0;
    scrollToEnd(els.transcriptLines);
  }

  function participantKey(p) {
    return p.participant_id != null ? p.participant_id : `${p.kind || ''}:${p.name || ''}`;
  }

  function setChatEnabled(on) {
    els.chatInput.disabled = !on;
    els.chatSend.disabled = !on;
  }

  // ---------------------------------------------------------- call events

  function handleEvent(ev) {
    if (!ev || typeof ev !== 'object') return;
    switch (ev.type) {
      case 'snapshot': {
        app.participants.clear();
        for (const p of Array.isArray(ev.participants) ? ev.participants : []) {
          if (p) app.participants.set(participantKey(p), { participant_id: p.participant_id, name: p.name, kind: p.kind });
        }
        renderParticipants();
        setChat(ev.chat);
        setTranscript(ev.transcript);
        if (ev.state) onCallState(ev.state);
        break;
      }
      case 'call_state':
        onCallState(ev.state);
        break;
      case 'participant_joined':
        app.participants.set(participantKey(ev), { participant_id: ev.participant_id, name: ev.name, kind: ev.kind });
        renderParticipants();
        break;
      case 'participant_left':
        app.participants.delete(participantKey(ev));
        renderParticipants();
        break;
      case 'call_chat':
        addChat(ev.sender ?? ev.name ?? '', ev.text ?? '');
        break;
      case 'call_transcript':
        addTranscript(transcriptLine(ev));
        break;
      default:
        break;
    }
  }

  function onCallState(state) {
    app.callState = state;
    if (ENDED_STATES.has(state)) {
      callKnownEnded = true;
      endCall('Call ended');
    }
  }

  // ------------------------------------------------------------ WebSocket

  function openSocket() {
    if (app.ended) return;
    const url = new URL(`${basePath}/ws`, location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    url.search = '';
    let ws;
    try {
      ws = new WebSocket(url.href);
    } catch (e) {
      console.warn('event socket:', e && e.message);
      scheduleReconnect();
      return;
    }
    app.ws = ws;
    ws.addEventListener('open', () => {
      if (app.ws !== ws) return;
      wsRetries = 0;
      setChatEnabled(!app.ended);
    });
    ws.addEventListener('message', (e) => {
      if (app.ws !== ws || typeof e.data !== 'string') return;
      let ev;
      try { ev = JSON.parse(e.data); } catch { return; }
      handleEvent(ev);
    });
    ws.addEventListener('close', (e) => {
      if (app.ws !== ws) return;
      app.ws = null;
      setChatEnabled(false);
      if (!app.ended) {
        console.warn(`event socket closed (code ${e.code}), reconnecting`);
        scheduleReconnect();
      }
    });
    ws.addEventListener('error', () => console.warn('event socket error'));
  }

  function scheduleReconnect() {
    if (app.ended || wsRetryTimer) return;
    if (wsRetries >= WS_MAX_RETRIES) {
      console.warn('event socket: giving up');
      return;
    }
    const delay = 1000 * 2 ** wsRetries;
    wsRetries += 1;
    wsRetryTimer = setTimeout(async () => {
      wsRetryTimer = null;
      if (app.ended) return;
      try {
        const info = await fetchInfo();
        if (info && ENDED_STATES.has(info.state)) {
          callKnownEnded = true;
          endCall('Call ended');
          return;
        }
      } catch (e) {
        // 404: the call is gone
        callKnownEnded = true;
        endCall('Call ended');
        return;
      }
      openSocket();
    }, delay);
  }

  function closeSocket() {
    if (wsRetryTimer) { clearTimeout(wsRetryTimer); wsRetryTimer = null; }
    const ws = app.ws;
    app.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) {
      try { ws.close(1000, 'bye'); } catch { /* already closing */ }
    }
    setChatEnabled(false);
  }

  // ------------------------------------------------------------ WHIP media

  function onTrack(e) {
    let stream = e.streams && e.streams[0];
    if (!stream) {
      stream = app.remoteStream || new MediaStream();
      if (!stream.getTracks().includes(e.track)) stream.addTrack(e.track);
    }
    app.remoteStream = stream;
    if (els.remote.srcObject !== stream) els.remote.srcObject = stream;
    playRemote();
  }

  function playRemote() {
    const p = els.remote.play();
    if (p && p.then) {
      p.then(() => { els.playAudio.hidden = true; })
        .catch((e) => {
          // autoplay blocked (no user gesture yet): offer a button
          if (e && e.name === 'NotAllowedError') els.playAudio.hidden = false;
        });
    }
  }

  function onConnectionState(pc) {
    if (pc !== app.pc || app.ended) return;
    switch (pc.connectionState) {
      case 'connected':
        everConnected = true;
        app.state = 'in_call';
        setStatus('In call', 'ok');
        break;
      case 'disconnected':
        if (everConnected) setStatus('Connection interrupted, reconnecting…');
        break;
      case 'failed':
      case 'closed':
        if (everConnected) {
          endCall('Call ended');
        } else {
          failJoin('Could not establish the audio connection.');
        }
        break;
      default:
        break;
    }
  }

  function deleteResource({ keepalive = false } = {}) {
    const url = app.resource;
    if (!url || resourceDeleted) return null;
    resourceDeleted = true;
    return fetch(url, { method: 'DELETE', headers: authHeaders(), keepalive });
  }

  // Tear the media down. Does not touch status/state.
  function teardown({ sendDelete }) {
    let pending = null;
    if (sendDelete) {
      pending = deleteResource();
      if (pending) pending.catch(() => {});
    }
    stopMic();
    if (app.pc && app.pc.signalingState !== 'closed') app.pc.close();
    closeSocket();
    els.mute.disabled = true;
    els.leave.disabled = true;
    els.playAudio.hidden = true;
    return pending;
  }

  async function join() {
    if (joining || joined) return;
    const name = els.name.value.trim() || 'Guest';
    els.name.value = name;
    app.name = name;
    joining = true;
    app.state = 'connecting';
    app.ended = false;
    app.error = null;
    app.deleteStatus = null;
    app.resource = null;
    resourceDeleted = false;
    callKnownEnded = false;
    everConnected = false;
    wsRetries = 0;
    els.join.disabled = true;
    els.name.disabled = true;
    setStatus('Connecting…');

    try {
      const info = await fetchInfo();
      app.info = info;
      showAgent(info);
      if (info.state && ENDED_STATES.has(info.state)) throw new Error('The call has ended.');
      if (!info.whip_url) throw new Error('The gateway did not provide a media endpoint.');
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        throw new Error('This browser cannot use the microphone on this page (a secure https:// address is needed).');
      }
      try {
        app.localStream = await navigator.mediaDevices.getUserMedia({
          audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
          video: false,
        });
      } catch (e) {
        throw new Error(micErrorText(e));
      }
      const track = app.localStream.getAudioTracks()[0];
      if (!track) throw new Error('No microphone was found.');
      track.enabled = !app.muted;

      joined = true;
      els.joinForm.hidden = true;
      els.call.hidden = false;
      els.leave.disabled = false;
      els.mute.disabled = false;
      openSocket();

      const pc = newPeerConnection(info.ice_servers);
      app.pc = pc;
      pc.addEventListener('track', onTrack);
      pc.addEventListener('connectionstatechange', () => onConnectionState(pc));
      pc.addTransceiver(track, { direction: 'sendrecv', streams: [app.localStream] });
      await pc.setLocalDescription(await pc.createOffer());
      const complete = await iceGatheringDone(pc, ICE_GATHER_TIMEOUT_MS);
      if (!complete) console.warn('ICE gathering not complete after 3 s, sending the candidates found so far');
      if (app.ended || app.pc !== pc) return;

      // percent-encoded (%20, not '+'), readable by any query decoder
      const whip = new URL(info.whip_url, location.href);
      const query = whip.search.replace(/^\?/, '');
      whip.search = `${query ? `${query}&` : ''}name=${encodeURIComponent(name)}`;
      const resp = await fetch(whip.href, {
        method: 'POST',
        headers: authHeaders({ 'Content-Type': 'application/sdp' }),
        body: pc.localDescription.sdp,
      });
      if (!resp.ok) throw new Error(await errorDetail(resp));
      const location_ = resp.headers.get('Location');
      if (location_) app.resource = new URL(location_, location.href).href;
      else console.warn('WHIP answer without a Location header: leaving cannot release the session');
      const answer = await resp.text();
      if (app.ended || app.pc !== pc) {
        // left while the offer was in flight
        const d = deleteResource();
        if (d) d.catch(() => {});
        return;
      }
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    } catch (e) {
      console.error('join failed:', e && e.message);
      failJoin((e && e.message) || String(e));
    } finally {
      joining = false;
    }
  }

  // Joining failed before the call was up: report, release, allow a retry.
  function failJoin(message) {
    if (app.ended && app.state !== 'connecting') return;
    app.state = 'error';
    app.error = message;
    teardown({ sendDelete: true });
    joined = false;
    app.ended = true;
    setStatus(message, 'error');
    els.call.hidden = true;
    els.joinForm.hidden = false;
    els.name.disabled = false;
    els.join.disabled = false;
  }

  // The call is over (reported by the server, or the media connection died).
  function endCall(text) {
    if (app.ended) return;
    if (app.state === 'connecting' && !everConnected && !callKnownEnded) {
      failJoin(text);
      return;
    }
    app.ended = true;
    app.state = 'ended';
    teardown({ sendDelete: !callKnownEnded });
    setStatus(text);
  }

  async function leave() {
    if (!joined || app.ended) return;
    app.ended = true;
    app.state = 'left';
    const pending = teardown({ sendDelete: true });
    setStatus('You left the call');
    if (!pending) return;
    try {
      const resp = await pending;
      app.deleteStatus = resp.status;
      if (!resp.ok) console.warn('leaving: DELETE answered', resp.status, await errorDetail(resp));
    } catch (e) {
      app.deleteStatus = 0;
      console.warn('leaving: DELETE failed:', e && e.message);
    }
  }

  function toggleMute() {
    const track = app.localStream && app.localStream.getAudioTracks()[0];
    if (!track || app.ended) return;
    track.enabled = !track.enabled;
    app.muted = !track.enabled;
    els.mute.textContent = app.muted ? 'Unmute' : 'Mute';
    els.mute.setAttribute('aria-pressed', String(app.muted));
  }

  function sendChat(e) {
    e.preventDefault();
    const text = els.chatInput.value.trim();
    if (!text) return;
    const ws = app.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      console.warn('chat: event socket not connected');
      return;
    }
    ws.send(JSON.stringify({ type: 'chat', name: app.name, text }));
    addChat(app.name, text, true);
    els.chatInput.value = '';
    els.chatInput.focus();
  }

  function onPageHide() {
    // best effort: release the WHIP session when the tab goes away
    if (!joined || resourceDeleted) return;
    try {
      const d = deleteResource({ keepalive: true });
      if (d) d.catch(() => {});
    } catch { /* page is going away */ }
  }

  function showAgent(info) {
    if (info && info.agent_name) {
      els.agentName.textContent = info.agent_name;
      els.subtitle.hidden = false;
      els.title.textContent = `Call with ${info.agent_name}`;
      document.title = `Call with ${info.agent_name} · Chamade`;
    }
  }

  // -------------------------------------------------------------- startup

  async function init() {
    const fromQuery = (params.get('name') || '').trim();
    if (fromQuery) els.name.value = fromQuery.slice(0, 64);
    els.joinForm.addEventListener('submit', (e) => { e.preventDefault(); join(); });
    els.mute.addEventListener('click', toggleMute);
    els.leave.addEventListener('click', () => { leave(); });
    els.playAudio.addEventListener('click', playRemote);
    els.chatForm.addEventListener('submit', sendChat);
    window.addEventListener('pagehide', onPageHide);
    window.addEventListener('beforeunload', onPageHide);

    if (!rawToken || basePath.lastIndexOf('/') <= 0) {
      app.state = 'error';
      app.error = 'This link has no call token.';
      setStatus(app.error, 'error');
      return;
    }
    if (params.get('autojoin') === '1') {
      join();
      return;
    }
    try {
      const info = await fetchInfo();
      app.info = info;
      showAgent(info);
      if (info.state && ENDED_STATES.has(info.state)) {
        app.state = 'ended';
        setStatus('Call ended');
        return;
      }
      app.state = 'ready';
      setStatus('Ready to join');
    } catch (e) {
      // shown, but Join stays available: it fetches the info again
      setStatus((e && e.message) || String(e), 'error');
    }
    els.join.disabled = false;
    els.name.focus();
  }

  init();
})();
