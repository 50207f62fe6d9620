//! Everything a notebook cell needs: `use conclab::prelude::*;`.

pub use crate::experiments::index::{SpawnCost, SpawnCostReport, spawn_cost};
pub use crate::lab::{
    Figure, Legend, MachineCard, ParamError, Point, Report, ReportResult, Rich, Sampling, Scale, Series, Stats, Style,
    Table, cores,
};
