import { useEffect } from "preact/hooks";

/**
 * Calls load() once, then again at most every `ms` while events of `kind` come (a heartbeat carries
 * each replica's state), until the page unmounts.
 */
export function useReloadOn(events, kind, load, ms = 2000) {
  useEffect(() => {
    let timer = null;
    load();
    const off = events.subscribe(kind, () => {
      if (!timer) timer = setTimeout(() => ((timer = null), load()), ms);
    });
    return () => {
      off();
      clearTimeout(timer);
    };
  }, [events]);
}
