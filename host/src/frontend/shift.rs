//! The `shift` instruction family (being written).

use super::dispatch::lifts;

lifts! {}
