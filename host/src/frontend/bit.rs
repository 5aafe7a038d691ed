//! The `bit` instruction family (being written).

use super::dispatch::lifts;

lifts! {}
