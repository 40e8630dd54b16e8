// The live demo page (GET /demo): the microphone, recorded by MediaRecorder as webm/opus in 250 ms
// pieces, streamed to WS /v1/listen; interim text replaced as it changes, final text appended.
// The key is the WebSocket subprotocol pair ['token', key], which the server accepts from browsers
// (they cannot set an Authorization header): it never goes into a URL and is never logged.
'use strict';

const $ = (id) => document.getElementById(id);
const SLICE_MS = 250;
let recorder = null;
let microphone = null;

function state(name, text) {
  document.body.dataset.state = name; // what tests/test_demo.py waits for
  $('status').textContent = text;
}

function show(message) {
  if (message.type === 'Results') {
    const text = message.channel.alternatives[0].transcript;
    if (message.is_final) {
      if (text) $('final').textContent = `${$('final').textContent} ${text}`.trim();
      $('interim').textContent = '';
    } else {
      $('interim').textContent = text;
    }
  } else if (message.type === 'Error' || (message.code && message.error)) {
    state(document.body.dataset.state, `${message.code}: ${message.error}`);
  }
}

function release() {
  if (recorder && recorder.state !== 'inactive') recorder.stop();
  if (microphone) microphone.getTracks().forEach((track) => track.stop());
  recorder = null;
  microphone = null;
  $('start').disabled = false;
  $('stop').disabled = true;
}

async function start() {
  const key = $('key').value.trim();
  if (!key) {
    state('idle', 'Enter a license key first.');
    return;
  }
  $('start').disabled = true;
  $('final').textContent = '';
  $('interim').textContent = '';
  try {
    // The voice as spoken: WebRTC's call processing (echo cancellation, noise suppression, gain
    // control) reshapes speech for a listener's ear and costs a recogniser words.
    const raw = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
    microphone = await navigator.mediaDevices.getUserMedia({ audio: raw });
  } catch (error) {
    release();
    state('idle', `No microphone (${error.name}). The page needs HTTPS or localhost.`);
    return;
  }
  // webm/opus (Chromium, Firefox) or ogg/opus: the server finds the container from its bytes.
  const mimeType = ['audio/webm;codecs=opus', 'audio/ogg;codecs=opus'].find((type) => MediaRecorder.isTypeSupported(type));
  const query = new URLSearchParams({ language: 'en', interim_results: 'true' });
  if ($('smart-format').checked) query.set('smart_format', 'true');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  state('connecting', 'Connecting…');
  let opened = false;
  const ws = new WebSocket(`${scheme}://${location.host}/v1/listen?${query}`, ['token', key]);
  // Recording starts at once: what is said while the stream connects waits here, in order (the
  // first piece holds the container's header), and goes out when it opens.
  const waiting = [];
  recorder = new MediaRecorder(microphone, mimeType ? { mimeType } : undefined);
  recorder.ondataavailable = (event) => {
    // An empty frame would end the stream (Deepgram's old close): only pieces with audio.
    if (event.data.size === 0) return;
    if (ws.readyState === WebSocket.OPEN) ws.send(event.data);
    else if (ws.readyState === WebSocket.CONNECTING) waiting.push(event.data);
  };
  recorder.onstop = () => {
    // After the last piece: the server answers everything sent, then closes.
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'CloseStream' }));
  };
  recorder.start(SLICE_MS);
  ws.onopen = () => {
    opened = true;
    for (const piece of waiting.splice(0)) ws.send(piece);
    $('stop').disabled = false;
    state('listening', 'Listening… speak now.');
  };
  ws.onmessage = (event) => show(JSON.parse(event.data));
  ws.onclose = (event) => {
    release();
    if (event.code === 1000) state('closed', 'Done.');
    else if (event.reason) state('closed', `Stream ended: ${event.reason}`);
    else state('closed', opened ? `Connection lost (${event.code}).` : 'The server refused the stream: check the key.');
  };
}

function stop() {
  $('stop').disabled = true;
  state('stopping', 'Finishing the transcript…');
  if (recorder && recorder.state !== 'inactive') recorder.stop(); // its onstop sends CloseStream
}

$('start').addEventListener('click', start);
$('stop').addEventListener('click', stop);
