// A live stream with the JavaScript SDK (clients/js, Node 18+; `npm ci` in clients/js installs
// `ws`, which Node 18-21 need): an audio file's bytes streamed to WS /v1/listen, its finals printed.
// In your own project: npm install @smallest/client ws, then import from '@smallest/client'.
import { readFile } from 'node:fs/promises';

import { SmallestClient } from '../clients/js/src/index.js';

const client = new SmallestClient({ apiUrl: process.env.API_URL ?? 'http://localhost:7100' }); // the key from LICENSE_KEY
const path = process.env.AUDIO_PATH ?? 'audio.flac';
// FLAC is named; a webm or ogg (Opus) stream is recognised without `encoding`.
const encoding = path.endsWith('.flac') ? { encoding: 'flac' } : {};
const stream = await client.listen({ ...encoding, language: 'en', interim_results: true });
stream.on('transcript', (result) => { if (result.isFinal && result.text) console.log(result.text); });

const audio = await readFile(path);
for (let at = 0; at < audio.length; at += 16000) stream.send(audio.subarray(at, at + 16000));
const metadata = await stream.close(); // after the finals of everything sent
console.log(`(${metadata.duration} s of audio)`);
