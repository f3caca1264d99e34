//! Moments worth reconnecting at once instead of at the next backoff step: the machine woke up,
//! or the network came up. Where the OS does not tell, the engine's backoff (at most 30 s) is
//! the portable fallback: a periodic probe of the server.
use std::time::{Duration, Instant, SystemTime};

const LOOK_EVERY: Duration = Duration::from_secs(3);
/// Wall time running this much ahead of monotonic time means the machine was asleep.
const SLEEP_GAP: Duration = Duration::from_secs(10);

/// Calls `nudge` on each such moment until it returns `false`.
pub async fn watch(mut nudge: impl FnMut(&'static str) -> bool) {
    let mut route = network::Route::new();
    let mut last = (Instant::now(), SystemTime::now());
    loop {
        tokio::time::sleep(LOOK_EVERY).await;
        let now = (Instant::now(), SystemTime::now());
        let monotonic = now.0 - last.0;
        let wall = now.1.duration_since(last.1).unwrap_or_default();
        last = now;
        // Monotonic clocks stop while the machine sleeps (Linux, macOS); the wall clock does not.
        if wall > monotonic + SLEEP_GAP && !nudge("woke up") {
            return;
        }
        if route.came_up() && !nudge("network up") {
            return;
        }
    }
}

#[cfg(target_os = "linux")]
mod network {
    /// Whether the kernel has a default route (IPv4 or IPv6): no route, no server.
    pub struct Route {
        up: bool,
    }

    impl Route {
        pub fn new() -> Self {
            Route { up: has_default_route() }
        }

        /// True once each time the default route appears.
        pub fn came_up(&mut self) -> bool {
            let up = has_default_route();
            let came_up = up && !self.up;
            self.up = up;
            came_up
        }
    }

    fn has_default_route() -> bool {
        let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        // Columns: Iface Destination Gateway ...; the default route has destination 00000000.
        let v4_default = v4.lines().skip(1).any(|line| line.split_whitespace().nth(1) == Some("00000000"));
        let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
        // Destination ::/0 over a real interface (not the loopback's unreachable entry).
        let v6_default = v6.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() == 10
                && fields[0] == "00000000000000000000000000000000"
                && fields[1] == "00"
                && fields[9] != "lo"
        });
        v4_default || v6_default
    }
}

/// No portable signal: the engine's periodic retries cover it.
#[cfg(not(target_os = "linux"))]
mod network {
    pub struct Route;

    impl Route {
        pub fn new() -> Self {
            Route
        }

        pub fn came_up(&mut self) -> bool {
            false
        }
    }
}
