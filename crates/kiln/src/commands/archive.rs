//! `kiln load` and `kiln save`.

use kiln_oci::Store;
use kiln_oci::reference::ImageRef;
use kiln_oci::transport::{export, open_image};

use crate::cli::{LoadArgs, SaveArgs, SaveFormat};
use crate::error::CliError;

/// `kiln load -i FILE`: prints each loaded manifest digest and its names.
pub fn load(store: &Store, args: &LoadArgs) -> Result<(), CliError> {
    let loaded = kiln_oci::archive::load(store, &args.input)?;
    for l in loaded {
        if l.names.is_empty() {
            println!("Loaded image: {}", l.descriptor.digest);
        }
        for n in &l.names {
            println!("Loaded image: {n} ({})", l.descriptor.digest);
        }
    }
    Ok(())
}

/// `kiln save -o FILE IMAGE`.
pub fn save(store: &Store, args: &SaveArgs) -> Result<(), CliError> {
    let src = ImageRef::parse(&args.image)?;
    let opened = open_image(store, &src, None)?;
    let names: Vec<String> = match &src {
        ImageRef::Store(n) => vec![n.store_key()],
        _ => vec![],
    };
    let dest = match args.format {
        SaveFormat::OciArchive => ImageRef::OciArchive {
            path: args.output.clone(),
            reference: None,
        },
        SaveFormat::DockerArchive => ImageRef::DockerArchive {
            path: args.output.clone(),
            reference: None,
        },
    };
    if opened.layout.root() != store.root() {
        kiln_oci::transport::copy_image(&opened.layout, &opened.descriptor, store)?;
    }
    export(store, &opened.descriptor, &dest, &names)?;
    Ok(())
}
