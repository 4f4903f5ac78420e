//! Gradient checkpointing by recomputation: a decoder's forward pass that keeps only the input
//! of each block, and the backward pass that recomputes every block, top down, with its graph.
//!
//! A plain training forward keeps every intermediate of every block alive until `backward`
//! (for SmolLM2 at 16 rows × 256 tokens, hundreds of MB per block). [`Recompute::run`] instead
//! runs each block on a detached copy of its input and detaches the output, so a block's graph
//! is freed as soon as the next block has started; what stays is one `[b, t, hidden]` tensor per
//! block. The output of the last block is a fresh [`Var`]: the rest of the model (final norm,
//! pooling, head, loss) is recorded as usual, and its `backward` yields, besides the gradients of
//! the head, the gradient with respect to that output.
//!
//! [`Recompute::backward`] then walks the blocks in reverse: it reruns block `i` on its saved
//! input (made a `Var`), with its graph, backpropagates the gradient `g` arriving at its output
//! through the surrogate loss `sum(out · g)` (whose gradient w.r.t. `out` is exactly `g`), hands
//! that block's parameter gradients to the caller, and takes the gradient w.r.t. the block input
//! as the next `g`. Last, the embedding is backpropagated the same way. The rerun must compute
//! what the first run did: dropout masks are drawn from `(seed, step, site)` (see
//! [`crate::nn::Dropout`]), so the same [`crate::Mode`] draws the same masks.
//!
//! ```no_run
//! # fn demo(model: &rewardkit_model::RewardModel, batch: &rewardkit_tokenize::Batch)
//! #     -> rewardkit_model::Result<()> {
//! use rewardkit_model::Mode;
//! let (rewards, tape) = model.forward_recompute(batch, Mode::Eval)?;
//! let top = rewards.sum_all()?.backward()?;
//! // Gradients of the head and final norm are in `top`; the blocks' arrive one by one.
//! tape.backward(&top, |grads| {
//!     let _ = grads; // add them to the step's gradients
//!     Ok::<(), rewardkit_model::ModelError>(())
//! })?;
//! # Ok(()) }
//! ```

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

/// Block `i` of a decoder for one batch, `[b, t, hidden]` to the same shape, with everything
/// else it needs (mask bias, rotary tables, mode) captured.
pub(crate) type BlockFn<'a> = Box<dyn Fn(usize, &Tensor) -> candle_core::Result<Tensor> + 'a>;

/// What a checkpointed forward pass keeps for its backward pass.
pub struct Recompute<'a> {
    blocks: usize,
    block: BlockFn<'a>,
    /// The embedding output, with its graph (small: embedding lookups only).
    embed: Tensor,
    /// The (detached) input of each block; `inputs[0]` is the embedding output.
    inputs: Vec<Tensor>,
    /// The last block's output, the leaf the rest of the model is recorded from.
    top: Var,
}

impl<'a> Recompute<'a> {
    /// Runs `blocks` blocks over `embed` without keeping their graphs; returns the last
    /// block's output (a tracked leaf) and the tape for [`Recompute::backward`].
    pub(crate) fn run(
        blocks: usize,
        block: BlockFn<'a>,
        embed: Tensor,
    ) -> candle_core::Result<(Tensor, Self)> {
        let mut x = embed.detach();
        let mut inputs = Vec::with_capacity(blocks);
        for i in 0..blocks {
            let out = block(i, &x)?.detach();
            inputs.push(x);
            x = out;
        }
        let top = Var::from_tensor(&x)?;
        let out = top.as_tensor().clone();
        Ok((
            out,
            Recompute {
                blocks,
                block,
                embed,
                inputs,
                top,
            },
        ))
    }

    /// Backpropagates through the blocks and the embedding. `top` is the gradient store of the
    /// part of the model above the blocks (it must hold the gradient of the output
    /// [`Recompute::run`] returned; none means that output did not reach the loss, and nothing
    /// is done). `sink` receives one store per block, top down, then the embedding's: each
    /// holds that segment's parameter gradients (and intermediate ones, to be ignored).
    pub fn backward<E: From<candle_core::Error>>(
        self,
        top: &GradStore,
        mut sink: impl FnMut(&GradStore) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(mut grad) = top.get(self.top.as_tensor()).map(Tensor::detach) else {
            return Ok(());
        };
        let Recompute {
            blocks,
            block,
            embed,
            mut inputs,
            top: _,
        } = self;
        for i in (0..blocks).rev() {
            let Some(input) = inputs.pop() else { break };
            let input = Var::from_tensor(&input)?;
            let out = block(i, input.as_tensor())?;
            let grads = surrogate(&out, &grad)?.backward()?;
            drop(out);
            sink(&grads)?;
            grad = match grads.get(input.as_tensor()) {
                Some(g) => g.detach(),
                // The block ignores its input: nothing reaches the blocks below.
                None => return Ok(()),
            };
        }
        let grads = surrogate(&embed, &grad)?.backward()?;
        sink(&grads)
    }
}

/// `sum(out · g)` with `g` a constant: its gradient w.r.t. `out` is `g`.
fn surrogate(out: &Tensor, grad: &Tensor) -> candle_core::Result<Tensor> {
    (out * grad)?.sum_all()
}
