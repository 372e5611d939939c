//! `kiln history IMAGE`: the config's history entries, newest first as in `docker
//! history`, each with the layer it made (entries marked `empty_layer` made none).

use kiln_oci::Store;

use crate::cli::{Format, HistoryArgs};
use crate::commands::images::human_size;
use crate::error::CliError;

/// One history entry and its layer.
struct Step {
    created: String,
    created_by: String,
    comment: String,
    layer: Option<(String, u64, String)>,
}

/// `kiln history`.
pub fn history(store: &Store, args: &HistoryArgs) -> Result<(), CliError> {
    let platform = super::parse_platform(&args.platform)?;
    let registries = super::registry_access(&args.registry)?;
    let opened = super::open_image(store, &args.image, platform.as_ref(), &registries)?;
    let img = &opened.image;
    let mut layers = img.manifest.layers.iter().zip(&img.config.rootfs.diff_ids);
    let mut steps: Vec<Step> = img
        .config
        .history
        .iter()
        .map(|h| Step {
            created: h.created.clone().unwrap_or_default(),
            created_by: h.created_by.clone().unwrap_or_default(),
            comment: h.comment.clone().unwrap_or_default(),
            layer: (!h.empty_layer)
                .then(|| layers.next())
                .flatten()
                .map(|(l, diff_id)| (l.digest.to_string(), l.size, diff_id.to_string())),
        })
        .collect();
    // Images written without history (some tools do) still show their layers.
    for (l, diff_id) in layers {
        steps.push(Step {
            created: String::new(),
            created_by: String::new(),
            comment: String::new(),
            layer: Some((l.digest.to_string(), l.size, diff_id.to_string())),
        });
    }
    steps.reverse();
    match args.format {
        Format::Json => {
            let v: Vec<_> = steps
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "created": s.created,
                        "createdBy": s.created_by,
                        "comment": s.comment,
                        "emptyLayer": s.layer.is_none(),
                        "layer": s.layer.as_ref().map(|(d, size, diff_id)| serde_json::json!({"digest": d, "size": size, "diffID": diff_id})),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        }
        Format::Table => print_table(&steps, args.no_trunc),
    }
    Ok(())
}

fn print_table(steps: &[Step], no_trunc: bool) {
    let cut = |s: &str, n: usize| -> String {
        if no_trunc || s.chars().count() <= n {
            s.to_string()
        } else {
            format!("{}…", s.chars().take(n - 1).collect::<String>())
        }
    };
    println!(
        "{:<20} {:<21} {:<50} {:>9}  COMMENT",
        "LAYER", "CREATED", "CREATED BY", "SIZE"
    );
    for s in steps {
        let (layer, size) = match &s.layer {
            Some((d, size, _)) if no_trunc => (d.clone(), human_size(*size)),
            Some((d, size, _)) => (d.chars().take(19).collect(), human_size(*size)),
            None => ("<empty>".to_string(), "0B".to_string()),
        };
        let created_by = s.created_by.replace('\n', " ");
        println!(
            "{layer:<20} {:<21} {:<50} {size:>9}  {}",
            s.created,
            cut(&created_by, 50),
            s.comment
        );
    }
}
