//! The `muldiv` instruction family (being written).

use super::dispatch::lifts;

lifts! {}
