//! C2SP tlog-tiles arithmetic (https://c2sp.org/tlog-tiles): tiles are 256
//! hashes wide; tile `N` at level `L` holds the hashes of level `8 L` from
//! `256 N`. Paths spell `N` in three-digit groups, all but the last
//! prefixed with `x`: 1234067 → `x001/x234/067`.

/// Tile width in hashes.
pub const WIDTH: u64 = 256;

/// The path element of a tile or bundle index.
pub fn index_path(n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    let mut rest = n / 1000;
    while rest > 0 {
        groups.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

/// For a tree size, per level: (full tiles, width of the partial tile or 0).
pub fn tiles_for_size(size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut count = size;
    while count > 0 {
        out.push((count / WIDTH, count % WIDTH));
        count /= WIDTH;
    }
    out
}
