// One EventSource for the whole console; views subscribe to the message names they care about.
const listeners = new Map();
let source = null;
let statusHandler = () => {};

export function onLive(name, handler) {
  if (!listeners.has(name)) listeners.set(name, new Set());
  listeners.get(name).add(handler);
  return () => listeners.get(name).delete(handler);
}

export function onLiveStatus(handler) {
  statusHandler = handler;
}

export function connect() {
  disconnect();
  source = new EventSource("/api/stream");
  source.onopen = () => statusHandler(true);
  source.onerror = () => statusHandler(false);
  for (const name of ["event", "ticket", "transition"]) {
    source.addEventListener(name, (message) => {
      const payload = JSON.parse(message.data);
      for (const handler of listeners.get(name) || []) handler(payload);
    });
  }
}

export function disconnect() {
  if (source) source.close();
  source = null;
}
