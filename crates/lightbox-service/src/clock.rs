//! The time source, injectable so tests can move time (storage tiers, skew windows).

use lightbox_domain::Millis;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

/// Wall-clock time moved forward by a fixed offset: zero (`OffsetClock::default()`) in
/// production, days in tests of storage tiers.
#[derive(Debug, Default, Clone, Copy)]
pub struct OffsetClock(pub std::time::Duration);

impl Clock for OffsetClock {
    fn now(&self) -> Millis {
        Millis::from_system_time(std::time::SystemTime::now() + self.0)
    }
}
