//! Checker for the `scheduler` golden: every schedule combination and the Euler steps.

use anyhow::Context;
use candle_core::Tensor;
use longcat_model::scheduler::{base_sigmas, Schedule};
use serde::Deserialize;

use crate::golden::{GoldenFile, Tolerance};

#[derive(Deserialize)]
struct Combo {
    shift: f32,
    steps: usize,
    tag: String,
    use_distill: bool,
}

#[derive(Deserialize)]
struct StepExample {
    shift: f32,
    steps: usize,
    use_distill: bool,
    step_index: usize,
}

fn vector(values: &[f32]) -> anyhow::Result<Tensor> {
    Ok(Tensor::new(values, &candle_core::Device::Cpu)?)
}

/// Checks every combination in `meta.combos` and the `step` / `step_i2v` tensors.
pub fn check(golden: &GoldenFile) -> anyhow::Result<()> {
    let combos: Vec<Combo> =
        serde_json::from_value(golden.meta_at("/combos")?.clone()).context("meta.combos")?;
    for c in &combos {
        let sigmas_in = base_sigmas(c.steps, c.use_distill);
        let schedule = Schedule::shifted(&sigmas_in, c.shift);
        let tol = Tolerance(0.0);
        golden.check_float(&format!("{}.sigmas_in", c.tag), &vector(&sigmas_in)?, tol);
        golden.check_float(
            &format!("{}.timesteps", c.tag),
            &vector(&schedule.timesteps)?,
            tol,
        );
        golden.check_float(
            &format!("{}.sigmas", c.tag),
            &vector(&schedule.sigmas)?,
            tol,
        );
    }

    if golden.has("step.sample") {
        let ex: StepExample = serde_json::from_value(golden.meta_at("/step_example")?.clone())
            .context("meta.step_example")?;
        let schedule = Schedule::stage1(ex.steps, ex.use_distill, ex.shift);
        let sample = golden.input("step.sample")?;
        let model_output = golden.input("step.model_output")?;
        let timestep = golden
            .input_cpu("step.timestep")?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let t = *timestep.first().context("empty step.timestep")?;
        let index = schedule
            .index_of(t)
            .with_context(|| format!("timestep {t} is not in the schedule"))?;
        anyhow::ensure!(
            index == ex.step_index,
            "timestep {t} found at step {index}, meta says {}",
            ex.step_index
        );
        let prev = schedule.step(index, &sample, &model_output)?;
        golden.check_float("step.prev_sample", &prev, Tolerance::COMPONENT);
        if golden.has("step_i2v.prev_latents") {
            let prev_i2v = schedule.step_i2v(index, &sample, &model_output, 1)?;
            golden.check_float("step_i2v.prev_latents", &prev_i2v, Tolerance::COMPONENT);
        }
    }
    Ok(())
}
