//! The simulated network between members: every message is delivered after a random delay
//! (so messages overtake one another), or lost, or delivered twice; partitions block
//! directed pairs of members. What a message meets is decided when it is sent, from the
//! run's random number generator, and a partition is checked again on arrival (a message
//! in flight when a partition starts is lost with it).

use std::collections::BTreeSet;

use rand::Rng;

use super::queue::Micros;

/// The network's behaviour for a run, drawn from the seed.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    pub loss_probability: f64,
    pub duplicate_probability: f64,
    pub delay_us_min: Micros,
    pub delay_us_max: Micros,
    /// A message is occasionally held much longer (a retransmission, a congested link).
    pub long_delay_probability: f64,
    pub long_delay_us_max: Micros,
}

impl NetworkConfig {
    /// A random network: from a clean LAN to a lossy, jittery one.
    pub fn random(rng: &mut impl Rng) -> NetworkConfig {
        let delay_us_min = rng.random_range(50..1_000);
        NetworkConfig {
            loss_probability: [0.0, 0.01, 0.05, 0.10][rng.random_range(0..4)],
            duplicate_probability: [0.0, 0.01, 0.05][rng.random_range(0..3)],
            delay_us_min,
            delay_us_max: delay_us_min + rng.random_range(200..10_000),
            long_delay_probability: [0.0, 0.01, 0.03][rng.random_range(0..3)],
            long_delay_us_max: rng.random_range(50_000..500_000),
        }
    }

    /// No loss, no duplication, a fixed small delay.
    pub fn reliable() -> NetworkConfig {
        NetworkConfig {
            loss_probability: 0.0,
            duplicate_probability: 0.0,
            delay_us_min: 500,
            delay_us_max: 500,
            long_delay_probability: 0.0,
            long_delay_us_max: 500,
        }
    }
}

/// A message's fate: delays after which copies arrive (none: lost).
pub type Deliveries = Vec<Micros>;

#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    /// (from, to) pairs that cannot talk (member ids).
    blocked: BTreeSet<(u64, u64)>,
}

impl Network {
    pub fn new(config: NetworkConfig) -> Network {
        Network {
            config,
            blocked: BTreeSet::new(),
        }
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    pub fn connected(&self, from: u64, to: u64) -> bool {
        !self.blocked.contains(&(from, to))
    }

    pub fn is_partitioned(&self) -> bool {
        !self.blocked.is_empty()
    }

    /// Blocks every message from a member of `from` to a member of `to`.
    pub fn block(&mut self, from: &[u64], to: &[u64]) {
        for &a in from {
            for &b in to {
                if a != b {
                    self.blocked.insert((a, b));
                }
            }
        }
    }

    /// Blocks both directions between the two sides.
    pub fn split(&mut self, side_a: &[u64], side_b: &[u64]) {
        self.block(side_a, side_b);
        self.block(side_b, side_a);
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// When the copies of a message sent now arrive, if at all.
    pub fn plan(&self, rng: &mut impl Rng) -> Deliveries {
        if rng.random_bool(self.config.loss_probability) {
            return Vec::new();
        }
        let copies = if rng.random_bool(self.config.duplicate_probability) {
            2
        } else {
            1
        };
        (0..copies).map(|_| self.delay_us(rng)).collect()
    }

    fn delay_us(&self, rng: &mut impl Rng) -> Micros {
        if rng.random_bool(self.config.long_delay_probability) {
            rng.random_range(self.config.delay_us_min..=self.config.long_delay_us_max)
        } else {
            rng.random_range(self.config.delay_us_min..=self.config.delay_us_max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn partitions_block_directed_pairs() {
        let mut net = Network::new(NetworkConfig::reliable());
        net.block(&[1], &[2, 3]);
        assert!(!net.connected(1, 2) && !net.connected(1, 3));
        assert!(net.connected(2, 1), "one way only");
        net.split(&[2], &[3]);
        assert!(!net.connected(2, 3) && !net.connected(3, 2));
        net.heal();
        assert!(!net.is_partitioned() && net.connected(1, 2));
    }

    #[test]
    fn plans_follow_the_config() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let reliable = Network::new(NetworkConfig::reliable());
        assert!((0..100).all(|_| reliable.plan(&mut rng) == vec![500]));
        let config = NetworkConfig {
            loss_probability: 1.0,
            ..NetworkConfig::reliable()
        };
        assert!(Network::new(config).plan(&mut rng).is_empty());
        let config = NetworkConfig {
            duplicate_probability: 1.0,
            ..NetworkConfig::reliable()
        };
        assert_eq!(Network::new(config).plan(&mut rng).len(), 2);
    }
}
