//! The agent's tree with a revision that moves on every mutable borrow of it. A reader
//! that keeps what it derived from the tree (a gateway's parsed Device Inventory)
//! learns whether that still holds without reading or comparing the tree: the same
//! revision means nothing could have changed it. A borrow that changed nothing moves
//! the revision too, which only costs the reader a fresh read.

use std::ops::{Deref, DerefMut};

use gwmo_tree::Tree;

/// A tree and how many times it was borrowed to be changed.
pub(crate) struct Revised {
    tree: Tree,
    revision: u64,
}

impl Revised {
    pub(crate) fn new(tree: Tree) -> Revised {
        Revised { tree, revision: 0 }
    }

    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }
}

impl Deref for Revised {
    type Target = Tree;

    fn deref(&self) -> &Tree {
        &self.tree
    }
}

impl DerefMut for Revised {
    fn deref_mut(&mut self) -> &mut Tree {
        self.revision = self.revision.wrapping_add(1);
        &mut self.tree
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_keeps_the_revision_and_any_borrow_to_change_moves_it() {
        let mut revised = Revised::new(Tree::default());
        let _ = revised.exists("./DevInfo");
        assert_eq!(revised.revision(), 0);
        revised
            .set_leaf("./X", "1", gwmo_tree::Format::Chr)
            .unwrap();
        assert_eq!(revised.revision(), 1);
        let borrowed: &mut Tree = &mut revised;
        let _ = borrowed;
        assert_eq!(
            revised.revision(),
            2,
            "a borrow that changed nothing moves it too"
        );
    }
}
