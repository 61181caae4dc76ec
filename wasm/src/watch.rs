//! `client.watch(callback)`: the genesis watch stream through the browser's `EventSource`.

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{Event, EventSource, MessageEvent};

use crate::error::ClientError;
use crate::pure::{WatchEvent, parse_watch_event};
use crate::to_js;

/// An event listener, kept alive as long as the stream it listens to.
type Listener = (&'static str, Closure<dyn FnMut(Event)>);

/// A running watch of the peer list; `stop()` ends it.
#[wasm_bindgen]
pub struct WatchHandle {
    source: EventSource,
    listeners: Vec<Listener>,
}

#[wasm_bindgen]
impl WatchHandle {
    /// Closes the stream; the callback is not called again.
    pub fn stop(&self) {
        self.source.close();
        for (name, listener) in &self.listeners {
            let _ = self
                .source
                .remove_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
        }
    }

    /// Whether the stream is closed (stopped, or refused for good by the browser).
    #[wasm_bindgen(getter)]
    pub fn stopped(&self) -> bool {
        self.source.ready_state() == EventSource::CLOSED
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        // The listeners are freed with the handle: the stream must not call them after.
        self.stop();
    }
}

/// Opens `url` (genesis's `/peers/watch`) and calls `callback` with each [`WatchEvent`].
pub(crate) fn start(url: &str, callback: js_sys::Function) -> Result<WatchHandle, ClientError> {
    let has_event_source =
        js_sys::Reflect::has(&js_sys::global(), &"EventSource".into()).unwrap_or(false);
    if !has_event_source {
        return Err(ClientError::Unsupported(
            "watch needs the EventSource API, which this JavaScript environment lacks (Node has none): \
             poll peers() instead"
                .to_owned(),
        ));
    }
    let source = EventSource::new(url).map_err(|e| ClientError::Network {
        url: url.to_owned(),
        reason: format!("{e:?}"),
    })?;
    let mut listeners = Vec::new();
    for name in ["snapshot", "change"] {
        let callback = callback.clone();
        let listener = Closure::<dyn FnMut(Event)>::new(move |event: Event| {
            let data = event
                .dyn_ref::<MessageEvent>()
                .and_then(|m| m.data().as_string());
            deliver(&callback, &parse_watch_event(name, data.as_deref()));
        });
        listeners.push((name, listener));
    }
    let errors = {
        let source = source.clone();
        Closure::<dyn FnMut(Event)>::new(move |_event: Event| {
            let message = if source.ready_state() == EventSource::CLOSED {
                "the watch stream is closed"
            } else {
                "the watch stream broke; reconnecting"
            };
            deliver(
                &callback,
                &WatchEvent::Error {
                    message: message.to_owned(),
                },
            );
        })
    };
    listeners.push(("error", errors));
    for (name, listener) in &listeners {
        source
            .add_event_listener_with_callback(name, listener.as_ref().unchecked_ref())
            .map_err(|e| {
                ClientError::Unsupported(format!("cannot listen to {name} events: {e:?}"))
            })?;
    }
    Ok(WatchHandle { source, listeners })
}

fn deliver(callback: &js_sys::Function, event: &WatchEvent) {
    let value = to_js(event).unwrap_or_else(|e| e);
    if let Err(thrown) = callback.call1(&JsValue::NULL, &value) {
        web_sys::console::error_2(&"plexus: the watch callback threw".into(), &thrown);
    }
}
