//! System mode: a small PC (later).
