//! A bounded queue from the guest threads to the writer thread that wakes a waiting
//! sender only once the queue is half empty: a guest thread that had to wait then queues
//! several buffers before it waits again, instead of sleeping and waking once per buffer
//! (each wake-up costs system calls, and a thread that sleeps loses its caches).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

pub(crate) struct Queue<T> {
    st: Mutex<State<T>>,
    not_empty: Condvar,
    not_full: Condvar,
    cap: usize,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    senders_waiting: usize,
    receiver_waiting: bool,
}

impl<T> Queue<T> {
    pub(crate) fn new(cap: usize) -> Queue<T> {
        Queue {
            st: Mutex::new(State {
                items: VecDeque::with_capacity(cap),
                closed: false,
                senders_waiting: 0,
                receiver_waiting: false,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            cap: cap.max(2),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `x`, waiting while the queue is full; gives it back if the queue is closed.
    pub(crate) fn push(&self, x: T) -> Result<(), T> {
        let mut st = self.lock();
        while st.items.len() >= self.cap && !st.closed {
            st.senders_waiting += 1;
            st = self.not_full.wait(st).unwrap_or_else(|e| e.into_inner());
            st.senders_waiting -= 1;
        }
        if st.closed {
            return Err(x);
        }
        st.items.push_back(x);
        if st.receiver_waiting {
            st.receiver_waiting = false;
            self.not_empty.notify_one();
        }
        Ok(())
    }

    /// The oldest item, waiting while the queue is empty; `None` once it is closed and
    /// empty.
    pub(crate) fn pop(&self) -> Option<T> {
        let mut st = self.lock();
        loop {
            if let Some(x) = st.items.pop_front() {
                if st.senders_waiting > 0 && st.items.len() <= self.cap / 2 {
                    self.not_full.notify_all();
                }
                return Some(x);
            }
            if st.closed {
                return None;
            }
            st.receiver_waiting = true;
            st = self.not_empty.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// No more items: `push` fails from now on, `pop` returns what is left, then `None`.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn keeps_order_and_drains_after_close() {
        let q = Arc::new(Queue::new(4));
        let q2 = q.clone();
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Some(x) = q2.pop() {
                got.push(x);
            }
            got
        });
        for i in 0..1000 {
            q.push(i).unwrap();
        }
        q.close();
        assert_eq!(q.push(5), Err(5));
        assert_eq!(t.join().unwrap(), (0..1000).collect::<Vec<_>>());
    }
}
