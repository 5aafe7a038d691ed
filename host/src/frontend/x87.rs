//! The `x87` instruction family (being written).

use super::dispatch::lifts;

lifts! {}
