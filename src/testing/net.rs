//! A seeded faulty network between two peers: messages may be dropped, duplicated, reordered and
//! delayed, each with its own probability, all drawn from the simulation's [`Rng`].

use std::collections::VecDeque;

use super::rng::Rng;

/// Fault probabilities, in per mille per message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The message is lost.
    pub drop: u32,
    /// The message is delivered twice.
    pub duplicate: u32,
    /// The message overtakes the one queued before it.
    pub reorder: u32,
    /// The message waits this many extra ticks at most (uniformly drawn).
    pub max_delay: u32,
}

impl Faults {
    /// A perfect network.
    pub const NONE: Faults = Faults { drop: 0, duplicate: 0, reorder: 0, max_delay: 0 };

    /// Fault rates drawn from `rng`: each fault is off in about half the runs and up to
    /// `max_per_mille` otherwise.
    pub fn random(rng: &mut Rng, max_per_mille: u32) -> Faults {
        let rate = |rng: &mut Rng| if rng.chance(500) { 0 } else { rng.range(1, u64::from(max_per_mille)) as u32 };
        Faults { drop: rate(rng), duplicate: rate(rng), reorder: rate(rng), max_delay: rng.below(4) as u32 }
    }
}

/// One message in flight.
#[derive(Clone, Debug)]
struct InFlight<M> {
    due: u64,
    msg: M,
}

/// Messages in flight between peer 0 and peer 1, with a logical clock.
#[derive(Clone, Debug)]
pub struct Network<M> {
    /// `queues[i]`: messages to peer `i`.
    queues: [VecDeque<InFlight<M>>; 2],
    /// The fault rates.
    pub faults: Faults,
    now: u64,
    /// Counts of (sent, dropped, duplicated, reordered) messages.
    pub stats: [u64; 4],
}

impl<M: Clone> Network<M> {
    /// An empty network with these faults.
    pub fn new(faults: Faults) -> Self {
        Network { queues: [VecDeque::new(), VecDeque::new()], faults, now: 0, stats: [0; 4] }
    }

    /// Sends `msg` to peer `to` (0 or 1), applying the faults.
    pub fn send(&mut self, to: usize, msg: M, rng: &mut Rng) {
        self.stats[0] += 1;
        if rng.chance(self.faults.drop) {
            self.stats[1] += 1;
            return;
        }
        let copies = if rng.chance(self.faults.duplicate) {
            self.stats[2] += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let due = self.now + rng.below(u64::from(self.faults.max_delay) + 1);
            let q = &mut self.queues[to & 1];
            let item = InFlight { due, msg: msg.clone() };
            if !q.is_empty() && rng.chance(self.faults.reorder) {
                self.stats[3] += 1;
                let at = rng.below(q.len() as u64) as usize;
                q.insert(at, item);
            } else {
                q.push_back(item);
            }
        }
    }

    /// Sends `msg` reliably and in order (no fault), e.g. over a fresh connection.
    pub fn send_reliably(&mut self, to: usize, msg: M) {
        self.stats[0] += 1;
        self.queues[to & 1].push_back(InFlight { due: self.now, msg });
    }

    /// The next message due, to a randomly chosen peer that has one (the other direction if the
    /// chosen one has nothing due). Advances the clock when nothing is due but something waits.
    pub fn next(&mut self, rng: &mut Rng) -> Option<(usize, M)> {
        if self.is_empty() {
            return None;
        }
        loop {
            let first = rng.below(2) as usize;
            for to in [first, 1 - first] {
                if self.queues[to].front().is_some_and(|m| m.due <= self.now) {
                    return self.queues[to].pop_front().map(|m| (to, m.msg));
                }
            }
            self.now += 1;
        }
    }

    /// Drops everything in flight (a disconnection); returns how many messages were lost.
    pub fn clear(&mut self) -> usize {
        let n = self.queues[0].len() + self.queues[1].len();
        self.queues[0].clear();
        self.queues[1].clear();
        n
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.queues[0].is_empty() && self.queues[1].is_empty()
    }

    /// The number of messages in flight.
    pub fn len(&self) -> usize {
        self.queues[0].len() + self.queues[1].len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn perfect_network_is_fifo_and_faults_happen() {
        let mut rng = Rng::new(3);
        let mut n = Network::new(Faults::NONE);
        for i in 0..10u32 {
            n.send(1, i, &mut rng);
        }
        let got: Vec<u32> = core::iter::from_fn(|| n.next(&mut rng)).map(|(_, m)| m).collect();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        let mut n = Network::new(Faults { drop: 200, duplicate: 200, reorder: 200, max_delay: 3 });
        for i in 0..1_000u32 {
            n.send((i % 2) as usize, i, &mut rng);
        }
        let mut got = 0;
        while n.next(&mut rng).is_some() {
            got += 1;
        }
        assert_eq!(n.stats[0], 1_000);
        assert!(n.stats[1] > 100 && n.stats[2] > 100 && n.stats[3] > 100, "{:?}", n.stats);
        assert_eq!(got as u64, 1_000 - n.stats[1] + n.stats[2]);
    }
}
