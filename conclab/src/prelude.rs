//! Everything a notebook cell needs: `use conclab::prelude::*;`.

pub use crate::experiments::index::{SpawnCost, SpawnCostReport, spawn_cost};
pub use crate::experiments::intro::{
    PingPong, PingPongReport, Processes, ProcessesReport, Scaling, ScalingReport, Stacks, StacksReport, Timeline,
    TimelineReport, ping_pong, processes, scaling, stacks, timeline,
};
pub use crate::lab::{
    Figure, Legend, MachineCard, ParamError, Point, Report, ReportResult, Rich, Sampling, Scale, Series, Stats, Style,
    Table, cores,
};
