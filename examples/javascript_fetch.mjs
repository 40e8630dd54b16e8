// The seed's JavaScript `fetch` example (Node 18+), with the key from the environment.
const LICENSE_KEY = process.env.LICENSE_KEY;
const API_URL = process.env.API_URL ?? "http://localhost:7100";
const AUDIO_URL = process.env.AUDIO_URL ?? "https://example.com/audio.wav";

const response = await fetch(`${API_URL}/v1/listen`, {
  method: "POST",
  headers: {
    "Authorization": `Token ${LICENSE_KEY}`,
    "Content-Type": "application/json"
  },
  body: JSON.stringify({
    url: AUDIO_URL
  })
});
const result = await response.json();
console.log(result);
