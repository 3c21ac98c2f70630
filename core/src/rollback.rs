//! Setup/rollback discipline: an ADD records how to undo each step it took;
//! if it returns early with an error, the steps are undone in reverse order.

use crate::{log, Result};

type Step<'a> = (String, Box<dyn FnOnce() -> Result<()> + 'a>);

/// Undo steps, run in reverse on drop unless [`Undo::commit`] was called.
#[must_use = "an Undo that is dropped at once undoes nothing useful"]
pub struct Undo<'a> {
    steps: Vec<Step<'a>>,
}

impl<'a> Undo<'a> {
    pub fn new() -> Self {
        Undo { steps: Vec::new() }
    }

    /// Records how to undo the step just taken; `what` names it for the log.
    pub fn push(&mut self, what: impl Into<String>, undo: impl FnOnce() -> Result<()> + 'a) {
        self.steps.push((what.into(), Box::new(undo)));
    }

    /// The operation succeeded: keep everything.
    pub fn commit(mut self) {
        self.steps.clear();
    }
}

impl Default for Undo<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        while let Some((what, undo)) = self.steps.pop() {
            match undo() {
                Ok(()) => log::info(format_args!("rolled back: {what}")),
                Err(e) => log::error(format_args!("rollback of {what} failed: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn undoes_in_reverse_unless_committed() {
        let done = RefCell::new(Vec::new());
        {
            let mut u = Undo::new();
            u.push("a", || {
                done.borrow_mut().push("a");
                Ok(())
            });
            u.push("b", || {
                done.borrow_mut().push("b");
                Ok(())
            });
        }
        assert_eq!(*done.borrow(), ["b", "a"]);
        let mut u = Undo::new();
        u.push("c", || {
            done.borrow_mut().push("c");
            Ok(())
        });
        u.commit();
        assert_eq!(done.borrow().len(), 2);
    }
}
