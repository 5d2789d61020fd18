//! Which connections the feed server keeps when it is full. Addresses that presented a
//! valid API key recently are "known": a share of the slots is theirs alone, and their
//! connections are never shed. When the server is full, a newcomer takes the slot of the
//! oldest stranger's connection that is not in a request — one that never finished a
//! request head first (a half-sent request nearest its header timeout anyway), then one idle
//! between requests. Slow clients from any number of addresses thus only displace each
//! other, and a consumer's connection, or its way in, is never theirs to take.
//! Pure: no pgrx, no I/O.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotSettings {
    pub max_connections: usize,
    /// Slots strangers cannot take.
    pub reserved_for_known: usize,
    /// How long an address stays known after its last valid key.
    pub remember_known: Duration,
    /// Known addresses kept at most; beyond, the least recent is forgotten.
    pub max_known: usize,
}

impl SlotSettings {
    /// A quarter of the connections reserved; addresses known for 10 minutes.
    pub fn for_cap(max_connections: usize) -> SlotSettings {
        SlotSettings {
            max_connections,
            reserved_for_known: max_connections / 4,
            remember_known: Duration::from_secs(600),
            max_known: 4096,
        }
    }
}

/// Connections are numbered as they come: a lower id is an older connection.
pub type ConnectionId = u64;

#[derive(Debug)]
struct Slot<T> {
    /// Its address was known when it opened, or it presented a valid key itself.
    known: bool,
    /// A request head completed on it at least once.
    served: bool,
    in_request: bool,
    handle: T,
}

impl<T> Slot<T> {
    fn sheddable(&self) -> bool {
        !self.known && !self.in_request
    }
}

/// A newcomer's slot, and the handle of the connection it displaced, which its owner closes.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<T> {
    pub id: ConnectionId,
    /// The newcomer's address is a known consumer's.
    pub known: bool,
    pub shed: Option<T>,
}

/// The open connections, each with a handle `T` its owner uses to close it when shed.
#[derive(Debug)]
pub struct Slots<T> {
    settings: SlotSettings,
    next_id: ConnectionId,
    open: BTreeMap<ConnectionId, Slot<T>>,
    known_open: usize,
    known: HashMap<IpAddr, Instant>,
}

impl<T> Slots<T> {
    pub fn new(settings: SlotSettings) -> Self {
        Slots {
            settings,
            next_id: 0,
            open: BTreeMap::new(),
            known_open: 0,
            known: HashMap::new(),
        }
    }

    pub fn is_known(&self, address: IpAddr, now: Instant) -> bool {
        self.known
            .get(&address)
            .is_some_and(|seen| now.saturating_duration_since(*seen) < self.settings.remember_known)
    }

    /// A slot for a new connection from `address`, displacing a stranger's connection when
    /// the server is full (or strangers hold their whole share); `Err` gives the handle back
    /// when every slot is a known address's or in a request.
    pub fn open(&mut self, address: IpAddr, now: Instant, handle: T) -> Result<Opened<T>, T> {
        let known = self.is_known(address, now);
        let strangers = self.open.len() - self.known_open;
        let stranger_share = self
            .settings
            .max_connections
            .saturating_sub(self.settings.reserved_for_known);
        let room = self.open.len() < self.settings.max_connections
            && (known || strangers < stranger_share);
        let shed = if room {
            None
        } else {
            match self.victim() {
                Some(id) => self.remove(id),
                None => return Err(handle),
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(
            id,
            Slot {
                known,
                served: false,
                in_request: false,
                handle,
            },
        );
        if known {
            self.known_open += 1;
        }
        Ok(Opened { id, known, shed })
    }

    /// The oldest stranger's connection without a finished request head, else the oldest
    /// stranger's connection idle between requests.
    fn victim(&self) -> Option<ConnectionId> {
        let mut idle = None;
        for (id, slot) in &self.open {
            if !slot.sheddable() {
                continue;
            }
            if !slot.served {
                return Some(*id);
            }
            idle.get_or_insert(*id);
        }
        idle
    }

    fn remove(&mut self, id: ConnectionId) -> Option<T> {
        let slot = self.open.remove(&id)?;
        if slot.known {
            self.known_open -= 1;
        }
        Some(slot.handle)
    }

    /// A request head arrived complete: the connection is not shed while it is answered.
    pub fn request_started(&mut self, id: ConnectionId) {
        if let Some(slot) = self.open.get_mut(&id) {
            slot.served = true;
            slot.in_request = true;
        }
    }

    pub fn request_finished(&mut self, id: ConnectionId) {
        if let Some(slot) = self.open.get_mut(&id) {
            slot.in_request = false;
        }
    }

    /// The connection presented a valid key: it is kept, and its address is known.
    pub fn presented_valid_key(&mut self, id: ConnectionId, address: IpAddr, now: Instant) {
        if let Some(slot) = self.open.get_mut(&id) {
            if !slot.known {
                slot.known = true;
                self.known_open += 1;
            }
        }
        self.known.insert(address, now);
        if self.known.len() > self.settings.max_known {
            let keep = self.settings.remember_known;
            self.known
                .retain(|_, seen| now.saturating_duration_since(*seen) < keep);
        }
        if self.known.len() > self.settings.max_known {
            let least_recent = self
                .known
                .iter()
                .min_by_key(|(_, seen)| **seen)
                .map(|(address, _)| *address);
            if let Some(address) = least_recent {
                self.known.remove(&address);
            }
        }
    }

    /// The connection ended; nothing happens for one already shed.
    pub fn close(&mut self, id: ConnectionId) {
        self.remove(id);
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    /// 8 connections, 2 of them for known addresses.
    fn slots() -> Slots<u32> {
        Slots::new(SlotSettings {
            max_connections: 8,
            reserved_for_known: 2,
            remember_known: Duration::from_secs(600),
            max_known: 3,
        })
    }

    /// A connection from `address` whose request presented a valid key.
    fn known(s: &mut Slots<u32>, address: IpAddr, now: Instant) -> ConnectionId {
        let id = s.open(address, now, 0).unwrap().id;
        s.request_started(id);
        s.presented_valid_key(id, address, now);
        s.request_finished(id);
        id
    }

    #[test]
    fn strangers_beyond_their_share_displace_the_oldest_half_sent_request() {
        let mut s = slots();
        let now = Instant::now();
        for i in 0..6 {
            let opened = s.open(ip(2), now, i).unwrap();
            assert!(!opened.known);
            assert_eq!(opened.shed, None);
        }
        // The seventh stranger takes the first one's slot; the reserve stays free.
        assert_eq!(s.open(ip(3), now, 6).unwrap().shed, Some(0));
        assert_eq!(s.open(ip(4), now, 7).unwrap().shed, Some(1));
        assert_eq!(s.len(), 6);
    }

    #[test]
    fn a_known_address_takes_the_reserve_then_displaces_strangers() {
        let mut s = slots();
        let now = Instant::now();
        let first = known(&mut s, ip(1), now);
        for i in 0..10 {
            s.open(ip(2), now, i).unwrap();
        }
        // The known connection was never displaced; one reserved slot is left.
        assert_eq!(s.len(), 7);
        let reserved = s.open(ip(1), now, 100).unwrap();
        assert!(reserved.known);
        assert_eq!(reserved.shed, None);
        let full = s.open(ip(1), now, 101).unwrap();
        assert_eq!(
            full.shed,
            Some(4),
            "the oldest stranger's connection still open"
        );
        assert_eq!(s.len(), 8);
        s.close(first);
        assert_eq!(s.open(ip(1), now, 102).unwrap().shed, None);
    }

    #[test]
    fn half_sent_requests_go_before_idle_connections_and_requests_in_progress_stay() {
        let mut s = slots();
        let now = Instant::now();
        let idle = s.open(ip(2), now, 0).unwrap().id;
        s.request_started(idle);
        s.request_finished(idle);
        let busy = s.open(ip(2), now, 1).unwrap().id;
        s.request_started(busy);
        for i in 2..6 {
            s.open(ip(2), now, i).unwrap();
        }
        // Half-sent requests first, oldest first, though the idle connection is older.
        for expected in 2..6 {
            assert_eq!(s.open(ip(3), now, 10).unwrap().shed, Some(expected));
            s.request_started(s.next_id - 1);
        }
        assert_eq!(s.open(ip(3), now, 20).unwrap().shed, Some(0));
        s.request_started(s.next_id - 1);
        // Every stranger's connection is in a request: the newcomer is refused.
        assert_eq!(s.open(ip(3), now, 30), Err(30));
        s.request_finished(busy);
        assert_eq!(s.open(ip(3), now, 31).unwrap().shed, Some(1));
    }

    #[test]
    fn known_connections_are_never_displaced() {
        let mut s = slots();
        let now = Instant::now();
        for _ in 0..8 {
            known(&mut s, ip(1), now);
        }
        assert_eq!(s.open(ip(2), now, 9), Err(9));
        assert_eq!(s.open(ip(1), now, 10), Err(10));
    }

    #[test]
    fn a_valid_key_protects_its_connection_at_once() {
        let mut s = slots();
        let now = Instant::now();
        let consumer = s.open(ip(9), now, 0).unwrap().id;
        s.request_started(consumer);
        s.presented_valid_key(consumer, ip(9), now);
        s.request_finished(consumer);
        for i in 1..20 {
            assert_ne!(s.open(ip(2), now, i).unwrap().shed, Some(0));
        }
        assert!(s.is_known(ip(9), now));
    }

    #[test]
    fn an_address_is_known_for_a_while_only() {
        let mut s = slots();
        let now = Instant::now();
        let id = known(&mut s, ip(1), now);
        s.close(id);
        let later = now + Duration::from_secs(601);
        assert!(s.is_known(ip(1), now + Duration::from_secs(599)));
        assert!(!s.is_known(ip(1), later));
        for i in 0..6 {
            s.open(ip(2), later, i).unwrap();
        }
        // No longer known: it is a stranger beyond the strangers' share.
        assert_eq!(s.open(ip(1), later, 6).unwrap().shed, Some(0));
    }

    #[test]
    fn known_addresses_stay_bounded_dropping_the_least_recent() {
        let mut s = slots();
        let now = Instant::now();
        for i in 1..=4u8 {
            let id = known(&mut s, ip(i), now + Duration::from_secs(u64::from(i)));
            s.close(id);
        }
        let now = now + Duration::from_secs(5);
        assert!(!s.is_known(ip(1), now));
        assert!((2..=4).all(|i| s.is_known(ip(i), now)));
    }

    #[test]
    fn closing_frees_the_slot_once() {
        let mut s = slots();
        let now = Instant::now();
        let ids: Vec<_> = (0..6).map(|i| s.open(ip(2), now, i).unwrap().id).collect();
        let displaced = s.open(ip(2), now, 6).unwrap();
        assert_eq!(displaced.shed, Some(0));
        // Its owner closes the displaced connection later: no effect on the others.
        s.close(ids[0]);
        assert_eq!(s.len(), 6);
        s.close(ids[1]);
        assert_eq!(s.len(), 5);
        assert_eq!(s.open(ip(2), now, 7).unwrap().shed, None);
        assert!(!s.is_empty());
    }
}
