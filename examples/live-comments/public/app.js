// The live-comments page: shows a video's comments live and posts new ones,
// through the Switchboard browser client. Query parameters:
//   gateway   the gateway's URL (default: this host, port 8080)
//   video     the video id (default 1234)
//   user      your name (default guest-NNNN)
//   lang      en | fr | es | de (default: the browser's language)
//   transport ws | sse | auto (default auto)
import { Switchboard } from '/switchboard.js';

const q = new URLSearchParams(location.search);
const gatewayUrl = q.get('gateway') || `${location.protocol}//${location.hostname}:8080`;
const video = q.get('video') || '1234';
const user = q.get('user') || `guest-${Math.floor(1000 + Math.random() * 9000)}`;
let lang = q.get('lang') || (navigator.language || 'en').slice(0, 2);

const $ = (id) => document.getElementById(id);
const list = $('comments');
const seen = new Set();
// For tests and curious developers: what the page went through.
const log = (window.liveComments = { gaps: [], events: [], rejected: null, closed: null, stream: null });

function setStatus(text) {
  $('status').textContent = text;
  $('status').className = `status ${text}`;
}

function addComment(c, source) {
  if (!c || typeof c.id !== 'string' || seen.has(c.id)) return;
  seen.add(c.id);
  const li = document.createElement('li');
  li.dataset.id = c.id;
  li.dataset.source = source;
  // user and html come HTML-escaped from the lambda.
  li.innerHTML = `<span class="user">${c.user}</span><span class="text">${c.html}</span>`;
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.appendChild(li);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

async function refetch(source) {
  const r = await fetch(`/api/recent?video=${encodeURIComponent(video)}&lang=${encodeURIComponent(lang)}`);
  if (!r.ok) throw new Error(`recent comments: HTTP ${r.status}`);
  const { comments } = await r.json();
  const before = seen.size;
  comments.forEach((c) => addComment(c, source));
  return seen.size - before;
}

const sb = new Switchboard(gatewayUrl, { transport: q.get('transport') || 'auto', events: ['hello', 'comment', 'rate_limited', 'notice', 'lang'] });
sb.onStatus(setStatus);

const stream = sb.open('live_comments', { video, user, lang }, {
  onOpen: () => setStatus('open'),
  onEvent: (ev) => {
    log.events.push({ event: ev.event, id: ev.id, topic: ev.topic });
    const d = ev.data || {};
    switch (ev.event) {
      case 'hello':
        $('title').textContent = d.title;
        $('who').textContent = `you are ${d.user}`;
        $('lang').value = d.lang;
        lang = d.lang;
        return;
      case 'comment':
        addComment(d, 'live');
        return;
      case 'rate_limited':
        $('notice').textContent = `Slow down: at most ${d.limit} comments per 10 s (retry in ${Math.ceil(d.retry_after_ms / 1000)} s)`;
        return;
      case 'notice':
        $('notice').textContent = d.message;
        return;
      case 'lang':
        lang = d.lang;
        return;
      default:
        // Direct from the viewers topic (no event name): {"kind":"viewers","count":N}.
        if (d.kind === 'viewers') $('viewers').textContent = String(d.count);
    }
  },
  onGap: async (topics) => {
    log.gaps.push(topics);
    const gap = $('gap');
    gap.hidden = false;
    gap.textContent = 'Reconnected, but some updates were missed: refetching…';
    try {
      const n = await refetch('refetch');
      gap.textContent = `Reconnected after a gap: refetched ${n} missed comment${n === 1 ? '' : 's'}.`;
    } catch (e) {
      gap.textContent = `Reconnected after a gap; refetch failed: ${e.message}`;
    }
  },
  onRejected: ({ code, reason }) => {
    log.rejected = { code, reason };
    setStatus('rejected');
    $('notice').textContent = `Cannot watch: ${reason} (${code})`;
  },
  onClose: ({ code, reason }) => {
    log.closed = { code, reason };
    setStatus('closed');
  },
});
log.stream = stream;

refetch('history').catch((e) => console.warn(e));

$('form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('text').value.trim();
  if (!text) return;
  $('notice').textContent = '';
  const cid = Array.from(crypto.getRandomValues(new Uint8Array(10)), (b) => b.toString(16).padStart(2, '0')).join('');
  try {
    stream.send({ text, cid });
    $('text').value = '';
  } catch (err) {
    $('notice').textContent = err.message;
  }
});

$('lang').addEventListener('change', () => {
  lang = $('lang').value;
  try {
    stream.send({ lang });
  } catch (err) {
    $('notice').textContent = err.message;
  }
});

if (sb.transport === 'sse') $('send').title = 'SSE is receive-only: posting needs the WebSocket transport';
