//! Every wire body genesis or a peer parses: no input panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_core::wire::{GenesisPush, Peer, PeerChange, PeerPing, PeerRegistrationResponse, PeerUpdate};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<PeerUpdate>(data);
    let _ = serde_json::from_slice::<PeerPing>(data);
    let _ = serde_json::from_slice::<Vec<Peer>>(data);
    let _ = serde_json::from_slice::<PeerRegistrationResponse>(data);
    let _ = serde_json::from_slice::<PeerChange>(data);
    if let Ok(push) = serde_json::from_slice::<GenesisPush>(data) {
        // What parses must serialise again.
        let _ = serde_json::to_vec(&push).expect("serialise");
    }
});
