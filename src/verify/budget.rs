//! Verifying within a memory budget, in parallel where it fits.
//!
//! A file's cost is its largest tensor: the most the verifier may hold of it at
//! once (a whole tensor copied to a device, or a view that is not contiguous;
//! contiguous tensors are summed in chunks whose pages are given back). Files
//! are spread over up to one helper process per core, as many as the budget
//! allows with every helper holding its largest file's largest tensor at once;
//! a file whose largest tensor alone exceeds the budget is refused, naming it.

use std::path::Path;

use super::{detect, Detected};

/// Which requests each helper process loads, one after another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lanes {
    pub lanes: Vec<Vec<usize>>,
    pub budget: u64,
}

/// Spreads files over at most `cores` lanes. `costs[i]`: the bytes file `i`
/// holds at once; `sizes[i]`: its size (to balance the lanes' work). The
/// number of lanes is the largest `n` such that the `n` largest costs fit the
/// budget together; each file then goes to the lane with the least work so far,
/// largest files first.
pub fn plan_lanes(costs: &[u64], sizes: &[u64], budget: u64, cores: usize) -> Lanes {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(costs[i]));
    let mut count = 0;
    let mut held = 0u64;
    for &i in order.iter().take(cores.max(1)) {
        held = held.saturating_add(costs[i]);
        if held > budget && count > 0 {
            break;
        }
        count += 1;
    }
    let count = count.max(1).min(costs.len().max(1));
    let mut lanes = vec![Vec::new(); count];
    let mut work = vec![0u64; count];
    let mut by_size: Vec<usize> = (0..costs.len()).collect();
    by_size.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    for i in by_size {
        let lane = (0..count).min_by_key(|&l| work[l]).expect("one lane at least");
        work[lane] += sizes[i];
        lanes[lane].push(i);
    }
    for lane in &mut lanes {
        lane.sort_unstable();
    }
    lanes.retain(|l| !l.is_empty());
    Lanes { lanes, budget }
}

/// Half of the memory available now (`MemAvailable`), else 4 GiB.
pub fn default_budget() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024 / 2)
        .unwrap_or(4 << 30)
}

/// The largest tensor a weight file holds (name, bytes), read from its header
/// or pickle without loading data. A TorchScript archive is loaded whole by
/// libtorch, so its cost is its size. `None`: not a weight file.
pub fn largest_tensor(path: &Path) -> std::io::Result<Option<(String, u64)>> {
    let Detected::Weights(format) = detect(path)? else {
        return Ok(None);
    };
    super::formats::largest(format, path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_fit_the_budget_and_balance_the_work() {
        // Four files of 100 bytes held at once each; a budget of 250 allows two lanes.
        let lanes = plan_lanes(&[100; 4], &[10, 20, 30, 40], 250, 8);
        assert_eq!(lanes.lanes.len(), 2);
        let mut all: Vec<usize> = lanes.lanes.concat();
        all.sort();
        assert_eq!(all, [0, 1, 2, 3]);
        // Never more lanes than cores, never fewer than one.
        assert_eq!(plan_lanes(&[1; 8], &[1; 8], u64::MAX, 2).lanes.len(), 2);
        assert_eq!(plan_lanes(&[500], &[500], 100, 2).lanes.len(), 1);
        assert!(plan_lanes(&[], &[], 100, 2).lanes.is_empty());
    }

    #[test]
    fn the_largest_tensor_is_read_from_headers() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let (name, bytes) = largest_tensor(&fixtures.join("model.safetensors")).unwrap().unwrap();
        assert_eq!((name.as_str(), bytes), ("conv.weight", 4 * 3 * 3 * 3 * 4));
        let (name, bytes) = largest_tensor(&fixtures.join("state_dict.pth")).unwrap().unwrap();
        assert_eq!((name.as_str(), bytes), ("conv.weight", 4 * 3 * 3 * 3 * 4));
        assert_eq!(largest_tensor(&fixtures.join("manifest.json")).unwrap(), None);
    }
}
