//! The SVG chart of throughput relative to the floor.

use std::collections::BTreeMap;

use plotters::prelude::*;

use crate::results::{Results, Throughput};
use crate::scenario::{Library, Scenario, StoreKind};

use super::{find, FLOOR_TARGET};

/// Draws throughput relative to the floor, per store and scenario (S2-S4): one panel per
/// mode.
pub fn chart(results: &Results, path: &std::path::Path) -> Result<(), String> {
    let modes = [
        ("in process", &results.in_process),
        ("over HTTP", &results.http),
    ];
    let root = SVGBackend::new(path, (1300, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|error| error.to_string())?;
    let panels = root.split_evenly((2, 1));
    for ((mode, rows), panel) in modes.iter().zip(panels.iter()) {
        panel_chart(mode, rows, panel)?;
    }
    root.present().map_err(|error| error.to_string())
}

fn panel_chart<DB: DrawingBackend>(
    mode: &str,
    rows: &[Throughput],
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), String> {
    let libraries = [
        Library::Cloakroom,
        Library::CloakroomActix,
        Library::TowerSessions,
        Library::ActixSession,
    ];
    let colors = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0x17, 0xbe, 0xcf),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x2c, 0xa0, 0x2c),
    ];
    let mut groups: Vec<(String, BTreeMap<usize, f64>)> = Vec::new();
    for store in StoreKind::ALL {
        for scenario in [Scenario::Read, Scenario::Write, Scenario::Login] {
            let Some(base) = find(rows, Library::Floor, store, scenario) else {
                continue;
            };
            let bars: BTreeMap<usize, f64> = libraries
                .iter()
                .enumerate()
                .filter_map(|(i, &library)| {
                    find(rows, library, store, scenario)
                        .map(|row| (i, row.per_second / base.per_second))
                })
                .collect();
            groups.push((format!("{} {}", store.name(), &scenario.label()[..2]), bars));
        }
    }
    if groups.is_empty() {
        return Ok(());
    }
    let top = groups
        .iter()
        .flat_map(|(_, bars)| bars.values().copied())
        .fold(1.0_f64, f64::max)
        * 1.1;
    let error = |error: DrawingAreaErrorKind<DB::ErrorType>| error.to_string();
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{mode}: throughput / floor (1.0 = the bare store; higher is better)"),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(0.0..groups.len() as f64, 0.0..top)
        .map_err(error)?;
    let labels: Vec<String> = groups.iter().map(|(label, _)| label.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_max_light_lines(1)
        .x_labels(groups.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_label_style(("sans-serif", 11))
        .draw()
        .map_err(error)?;
    for (i, color) in colors.iter().enumerate() {
        let bars: Vec<Rectangle<(f64, f64)>> = groups
            .iter()
            .enumerate()
            .filter_map(|(g, (_, bars))| {
                bars.get(&i).map(|&value| {
                    let left = g as f64 + 0.1 + 0.2 * i as f64;
                    Rectangle::new([(left, 0.0), (left + 0.19, value)], color.filled())
                })
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(error)?
            .label(libraries[i].name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .draw_series(LineSeries::new(
            [(0.0, FLOOR_TARGET), (groups.len() as f64, FLOOR_TARGET)],
            RED.stroke_width(1),
        ))
        .map_err(error)?
        .label("target 0.8")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 10, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(error)
}
