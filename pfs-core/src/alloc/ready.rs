//! The set of READY block tags, shaped as the reference's.
//!
//! The reference keeps free block tags whose discard status is READY in a
//! search tree made with the C library's `tsearch`/`tdelete`, and reuses
//! the tag at the tree's **root** first. Which tag that is depends on the
//! exact shape of glibc's red-black tree (top-down insertion that splits
//! nodes with two red children on the way down; deletion that copies the
//! successor's key into the deleted node and unchains the successor), so
//! this is that algorithm, written over an arena of nodes. A test checks
//! it against the C library's own functions.

use std::cmp::Ordering;

/// One tree node.
#[derive(Debug, Clone, Copy)]
struct Node {
    key: u64,
    left: Option<u32>,
    right: Option<u32>,
    red: bool,
}

/// Reads one child of a node.
type Child = fn(&Node) -> Option<u32>;

/// Where a node is linked from: the root slot or a child field of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Root,
    Left(u32),
    Right(u32),
}

/// A set of keys with the shape glibc's `tsearch` tree would have after the
/// same inserts and deletes.
#[derive(Debug, Clone, Default)]
pub(super) struct ReadyTree {
    nodes: Vec<Node>,
    spare: Vec<u32>,
    root: Option<u32>,
    len: usize,
}

impl ReadyTree {
    /// The key at the root: the one the reference reuses next.
    pub(super) fn first(&self) -> Option<u64> {
        self.root.map(|r| self.node(r).key)
    }

    /// Whether `key` is in the set.
    #[cfg(test)]
    pub(super) fn contains(&self, key: u64) -> bool {
        let mut at = self.root;
        while let Some(n) = at {
            let node = self.node(n);
            at = match key.cmp(&node.key) {
                Ordering::Equal => return true,
                Ordering::Less => node.left,
                Ordering::Greater => node.right,
            };
        }
        false
    }

    /// Number of keys.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn node(&self, n: u32) -> &Node {
        &self.nodes[n as usize]
    }

    fn node_mut(&mut self, n: u32) -> &mut Node {
        &mut self.nodes[n as usize]
    }

    fn get(&self, l: Link) -> Option<u32> {
        match l {
            Link::Root => self.root,
            Link::Left(n) => self.node(n).left,
            Link::Right(n) => self.node(n).right,
        }
    }

    fn set(&mut self, l: Link, to: Option<u32>) {
        match l {
            Link::Root => self.root = to,
            Link::Left(n) => self.node_mut(n).left = to,
            Link::Right(n) => self.node_mut(n).right = to,
        }
    }

    fn red(&self, n: Option<u32>) -> bool {
        n.is_some_and(|n| self.node(n).red)
    }

    fn paint(&mut self, n: Option<u32>, red: bool) {
        if let Some(n) = n {
            self.node_mut(n).red = red;
        }
    }

    fn new_node(&mut self, key: u64) -> u32 {
        let node = Node {
            key,
            left: None,
            right: None,
            red: true,
        };
        match self.spare.pop() {
            Some(n) => {
                self.nodes[n as usize] = node;
                n
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    /// Splits the node at `at` when both its children are red (always when
    /// `force`, which is the check after linking a new red leaf), then
    /// repairs two red nodes in a row by rotating at the grandparent.
    /// `p_dir`/`gp_dir` say which way the descent went from the parent and
    /// from the grandparent.
    fn split(
        &mut self,
        at: Link,
        parent: Option<Link>,
        grand: Option<Link>,
        p_dir: Ordering,
        gp_dir: Ordering,
        force: bool,
    ) {
        let Some(n) = self.get(at) else { return };
        let (l, r) = (self.node(n).left, self.node(n).right);
        if !(force || (l.is_some() && r.is_some() && self.red(l) && self.red(r))) {
            return;
        }
        self.node_mut(n).red = true;
        self.paint(r, false);
        self.paint(l, false);
        let Some(parent) = parent else { return };
        if !self.red(self.get(parent)) {
            return;
        }
        // A red parent is never the root, so there is a grandparent.
        let (Some(grand), Some(p)) = (grand, self.get(parent)) else {
            return;
        };
        let Some(gp) = self.get(grand) else { return };
        let p_right = p_dir == Ordering::Greater;
        let gp_right = gp_dir == Ordering::Greater;
        if p_right != gp_right {
            // Zig-zag: the node goes to the top with its parent and
            // grandparent as children.
            self.node_mut(p).red = true;
            self.node_mut(gp).red = true;
            self.node_mut(n).red = false;
            if p_dir == Ordering::Less {
                self.node_mut(p).left = r;
                self.node_mut(n).right = Some(p);
                self.node_mut(gp).right = l;
                self.node_mut(n).left = Some(gp);
            } else {
                self.node_mut(p).right = l;
                self.node_mut(n).left = Some(p);
                self.node_mut(gp).left = r;
                self.node_mut(n).right = Some(gp);
            }
            self.set(grand, Some(n));
        } else {
            // Zig-zig: the parent goes to the top.
            self.set(grand, Some(p));
            self.node_mut(p).red = false;
            self.node_mut(gp).red = true;
            if p_dir == Ordering::Less {
                let pr = self.node(p).right;
                self.node_mut(gp).left = pr;
                self.node_mut(p).right = Some(gp);
            } else {
                let pl = self.node(p).left;
                self.node_mut(gp).right = pl;
                self.node_mut(p).left = Some(gp);
            }
        }
    }

    /// Adds `key` (as `tsearch`, which may reshape the tree on the way down
    /// even when the key is there already); says whether it was new.
    pub(super) fn insert(&mut self, key: u64) -> bool {
        let root = self.root;
        self.paint(root, false);
        let mut at = Link::Root;
        let mut parent: Option<Link> = None;
        let mut grand: Option<Link> = None;
        let (mut dir, mut p_dir, mut gp_dir) = (Ordering::Equal, Ordering::Equal, Ordering::Equal);
        let mut next = Link::Root;
        while self.get(next).is_some() {
            let Some(n) = self.get(at) else { break };
            dir = key.cmp(&self.node(n).key);
            if dir == Ordering::Equal {
                return false;
            }
            self.split(at, parent, grand, p_dir, gp_dir, false);
            next = match dir {
                Ordering::Less => Link::Left(n),
                _ => Link::Right(n),
            };
            if self.get(next).is_none() {
                break;
            }
            grand = parent;
            parent = Some(at);
            at = next;
            gp_dir = p_dir;
            p_dir = dir;
        }
        let q = self.new_node(key);
        self.set(next, Some(q));
        self.len += 1;
        if next != at {
            self.split(next, Some(at), parent, dir, p_dir, true);
        }
        true
    }

    /// Removes `key` (as `tdelete`); says whether it was there.
    pub(super) fn remove(&mut self, key: u64) -> bool {
        let mut stack: Vec<Link> = Vec::new();
        let mut at = Link::Root;
        let Some(mut n) = self.get(at) else {
            return false;
        };
        loop {
            let dir = key.cmp(&self.node(n).key);
            if dir == Ordering::Equal {
                break;
            }
            stack.push(at);
            at = match dir {
                Ordering::Less => Link::Left(n),
                _ => Link::Right(n),
            };
            match self.get(at) {
                Some(c) => n = c,
                None => return false,
            }
        }
        // `n` holds the key. With two children its successor's key moves
        // into it and the successor is unchained instead.
        let unchained = if self.node(n).left.is_none() || self.node(n).right.is_none() {
            n
        } else {
            let mut parent = at;
            let mut up = Link::Right(n);
            loop {
                stack.push(parent);
                parent = up;
                let Some(u) = self.get(up) else { break };
                if self.node(u).left.is_none() {
                    break;
                }
                up = Link::Left(u);
            }
            match self.get(up) {
                Some(u) => u,
                None => return false,
            }
        };
        let mut r = self.node(unchained).left.or(self.node(unchained).right);
        match stack.last() {
            None => self.set(at, r),
            Some(&top) => {
                if let Some(q) = self.get(top) {
                    if self.node(q).right == Some(unchained) {
                        self.node_mut(q).right = r;
                    } else {
                        self.node_mut(q).left = r;
                    }
                }
            }
        }
        if unchained != n {
            let k = self.node(unchained).key;
            self.node_mut(n).key = k;
        }
        if !self.node(unchained).red {
            self.rebalance(&mut stack, &mut r);
            self.paint(r, false);
        }
        self.spare.push(unchained);
        self.len -= 1;
        true
    }

    /// Moves the missing black node up from `r` (whose parents are on
    /// `stack`) until rotations and recolouring absorb it.
    fn rebalance(&mut self, stack: &mut Vec<Link>, r: &mut Option<u32>) {
        while let Some(&last) = stack.last() {
            if self.red(*r) {
                break;
            }
            let mut pp = last;
            let Some(p) = self.get(pp) else { break };
            // As in the C library, a missing `r` counts as the left child
            // when the left child is missing too.
            let left_side = *r == self.node(p).left;
            let (far, near): (Child, Child) = if left_side {
                (|x| x.right, |x| x.left)
            } else {
                (|x| x.left, |x| x.right)
            };
            let mut q = far(self.node(p));
            if self.red(q) {
                // Red sibling: rotate it above the parent first.
                let Some(qn) = q else { break };
                self.node_mut(qn).red = false;
                self.node_mut(p).red = true;
                let inner = near(self.node(qn));
                if left_side {
                    self.node_mut(p).right = inner;
                    self.node_mut(qn).left = Some(p);
                } else {
                    self.node_mut(p).left = inner;
                    self.node_mut(qn).right = Some(p);
                }
                self.set(pp, Some(qn));
                pp = if left_side {
                    Link::Left(qn)
                } else {
                    Link::Right(qn)
                };
                stack.push(pp);
                q = far(self.node(p));
            }
            let Some(qn) = q else { break };
            let (q_near, q_far) = (near(self.node(qn)), far(self.node(qn)));
            if !self.red(q_near) && !self.red(q_far) {
                self.node_mut(qn).red = true;
                *r = Some(p);
            } else {
                let p_red = self.node(p).red;
                if !self.red(q_far) {
                    // The near child of the sibling is red: it goes to
                    // the top.
                    let Some(q2) = q_near else { break };
                    self.node_mut(q2).red = p_red;
                    let (q2l, q2r) = (self.node(q2).left, self.node(q2).right);
                    if left_side {
                        self.node_mut(p).right = q2l;
                        self.node_mut(qn).left = q2r;
                        self.node_mut(q2).right = Some(qn);
                        self.node_mut(q2).left = Some(p);
                    } else {
                        self.node_mut(p).left = q2r;
                        self.node_mut(qn).right = q2l;
                        self.node_mut(q2).left = Some(qn);
                        self.node_mut(q2).right = Some(p);
                    }
                    self.set(pp, Some(q2));
                    self.node_mut(p).red = false;
                } else {
                    // The far child is red: rotate the parent.
                    self.node_mut(qn).red = p_red;
                    self.node_mut(p).red = false;
                    self.paint(q_far, false);
                    if left_side {
                        self.node_mut(p).right = q_near;
                        self.node_mut(qn).left = Some(p);
                    } else {
                        self.node_mut(p).left = q_near;
                        self.node_mut(qn).right = Some(p);
                    }
                    self.set(pp, Some(qn));
                }
                stack.truncate(1);
                *r = None;
            }
            stack.pop();
        }
    }

    /// The tree as (key, red, left, right) in preorder, for tests.
    #[cfg(test)]
    fn shape(&self) -> Vec<(u64, bool, Option<u64>, Option<u64>)> {
        let mut out = Vec::new();
        let mut todo: Vec<u32> = self.root.into_iter().collect();
        while let Some(n) = todo.pop() {
            let node = self.node(n);
            let key_of = |c: Option<u32>| c.map(|c| self.node(c).key);
            out.push((node.key, node.red, key_of(node.left), key_of(node.right)));
            todo.extend(node.right);
            todo.extend(node.left);
        }
        out
    }
}

// The comparison with the C library calls it through FFI, in `sys` with
// the rest of the crate's unsafe code.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::ctree::CTree;

    impl Drop for CTree {
        fn drop(&mut self) {
            let keys: Vec<u64> = self.shape().iter().map(|s| s.0).collect();
            for k in keys {
                self.remove(k);
            }
        }
    }

    /// Small deterministic generator.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// The root's colour is meaningless (the C library paints it black
    /// only on its next insert): compare everything else.
    fn same(ours: &ReadyTree, theirs: &CTree, what: &str) {
        let mut a = ours.shape();
        let mut b = theirs.shape();
        if let (Some(x), Some(y)) = (a.first_mut(), b.first_mut()) {
            x.1 = false;
            y.1 = false;
        }
        assert_eq!(a, b, "{what}");
    }

    #[test]
    fn shapes_match_the_c_library() {
        for seed in 1..=40u64 {
            let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut ours = ReadyTree::default();
            let mut theirs = CTree(std::ptr::null_mut());
            let span = 8 + (seed % 5) * 40;
            for step in 0..600 {
                let key = 1 + next(&mut s) % span;
                let what = format!("seed {seed} step {step} key {key}");
                match next(&mut s) % 3 {
                    0 | 1 => {
                        let had = ours.contains(key);
                        assert_eq!(ours.insert(key), !had, "{what}");
                        theirs.insert(key);
                    }
                    _ => {
                        let had = ours.contains(key);
                        assert_eq!(ours.remove(key), had, "{what}");
                        theirs.remove(key);
                    }
                }
                same(&ours, &theirs, &what);
                // The reference's reuse: take the root.
                if step % 7 == 0 {
                    if let Some(k) = ours.first() {
                        assert!(ours.remove(k));
                        theirs.remove(k);
                        same(&ours, &theirs, &format!("{what}, root taken"));
                    }
                }
            }
            assert_eq!(ours.len(), ours.shape().len());
        }
    }

    #[test]
    fn ascending_inserts_then_root_first() {
        // The fstrim golden case: freed tags 131, 132, 134 (chunk 0) and
        // 4227, 4229 (chunk 1) are reused as 132, then 134.
        let mut t = ReadyTree::default();
        for k in [131, 132, 134, 4227, 4229] {
            assert!(t.insert(k));
        }
        let mut taken = Vec::new();
        while let Some(k) = t.first() {
            assert!(t.remove(k));
            taken.push(k);
        }
        assert_eq!(taken[..2], [132, 134]);
        assert_eq!(taken.len(), 5);
    }
}
