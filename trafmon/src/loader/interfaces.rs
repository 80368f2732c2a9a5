//! The interface half of [`Installed`]: attaching the tc programs to the
//! interfaces to be counted as they come, go and are renamed, with TCX
//! links (pinned) or, where the kernel has none, clsact filters.

use std::{collections::BTreeMap, fs, os::fd::AsFd as _};

use aya::programs::{
    LinkOrder, ProgramError, SchedClassifier, TcAttachType,
    links::{FdLink, PinnedLink},
    tc::{SchedClassifierLink, TcAttachOptions},
};

use super::{Installed, LoaderError, pin, pinned_links, remove_pin, tc_programs};
use crate::{
    clsact,
    config::Interfaces,
    ifaces::{self, Framing, Interface},
    paths::Attachment,
    relink,
};

impl Installed {
    /// Attaches to the interfaces that should be counted and are not yet,
    /// and forgets pinned links of interfaces that no longer exist (auto) or
    /// are no longer configured (list). Called at start, every interval
    /// and on link events.
    pub fn sync_interfaces(&mut self) -> Result<(), LoaderError> {
        // A pass whose list is already stale (a device renamed just after
        // it was listed) changes nothing, and the next lists them anew;
        // after three such passes the rename's own link event starts one
        // more.
        for _ in 0..3 {
            if self.sync_pass()? {
                break;
            }
        }
        Ok(())
    }

    /// One pass of [`Self::sync_interfaces`]; false, having changed
    /// nothing, when a device was renamed after the interfaces were listed.
    fn sync_pass(&mut self) -> Result<bool, LoaderError> {
        let present = ifaces::list().map_err(LoaderError::Interfaces)?;
        if self.renamed_since(&present)? {
            return Ok(false);
        }
        let wanted: BTreeMap<String, &Interface> = match &self.interfaces {
            // Down ones too: the kernel sends packets of its own (IPv6
            // listener reports, router solicitations, DHCP) the moment a
            // device comes up, before a link event could get it attached.
            Interfaces::Auto => present
                .values()
                .filter(|i| !i.loopback)
                .map(|i| (i.name.clone(), i))
                .collect(),
            Interfaces::List(names) => {
                for name in names.iter().filter(|n| !present.contains_key(*n)) {
                    if self.missing.insert(name.clone()) {
                        tracing::warn!(interface = %name, "configured interface does not exist (yet)");
                    }
                }
                names
                    .iter()
                    .filter_map(|n| present.get(n).map(|i| (n.clone(), i)))
                    .collect()
            }
        };
        // Forget links of interfaces that are gone or no longer wanted, or
        // whose device is not the one of that name now (it was removed and
        // made again between two calls, as `wg-quick down; up` does: its
        // link went with the old device), unless the device was renamed
        // to a wanted name: then its link is renamed with it.
        for attachment in pinned_links(&self.pins)? {
            let Some(ifname) = attachment.interface() else {
                continue;
            };
            let keep = match &self.interfaces {
                Interfaces::Auto => present.contains_key(ifname),
                Interfaces::List(_) => wanted.contains_key(ifname),
            };
            if keep && self.on_its_device(&attachment, ifname) {
                continue;
            }
            if let Some(renamed) = self.renamed(&attachment, &wanted) {
                // The link goes with its device (renamed), so that no
                // packet goes uncounted: a new attach would have to wait
                // until the kernel has released the old link (it does so
                // later, from a work queue), and meanwhile the device would
                // not be counted.
                let (from, to) = (self.pins.link(&attachment), self.pins.link(&renamed));
                fs::rename(&from, &to).map_err(|source| LoaderError::Rename {
                    from: from.clone(),
                    to: to.clone(),
                    source,
                })?;
                tracing::info!(interface = %ifname, now = renamed.interface().unwrap_or_default(), "interface renamed: its link goes with it");
                // Handed its program for the new name below.
            } else if keep {
                remove_pin(&self.pins.link(&attachment))?;
                tracing::info!(interface = %ifname, "interface made anew: attaching again");
            } else {
                remove_pin(&self.pins.link(&attachment))?;
                tracing::info!(interface = %ifname, "interface gone: detached");
            }
            self.attached.remove(&attachment);
        }
        if self.mode == clsact::Mode::Clsact {
            self.forget_filters(&wanted)?;
            if !self.swept {
                // Filters are not pinned, so those a former run put on
                // interfaces no longer watched are found only here, once.
                self.sweep_unwanted(&present, &wanted)?;
                self.swept = true;
            }
        }
        // One interface that cannot be attached does not keep the others
        // from being attached; the first failure is returned.
        let mut failed = None;
        for (name, iface) in wanted {
            for attachment in [
                Attachment::TcIngress(name.clone()),
                Attachment::TcEgress(name.clone()),
            ] {
                if self.attached.contains(&attachment) {
                    continue;
                }
                let addresses = self.addresses.counts(&name);
                match self.attach_tc(&attachment, iface.framing, addresses) {
                    Ok(()) => {
                        tracing::info!(interface = %name, link = %attachment.pin_name(), addresses, "attached");
                        self.attached.insert(attachment);
                    }
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
        }
        failed.map_or(Ok(true), Err)
    }

    /// Deletes this pin directory's filters from the present interfaces
    /// that are not `wanted`.
    fn sweep_unwanted(
        &self,
        present: &BTreeMap<String, Interface>,
        wanted: &BTreeMap<String, &Interface>,
    ) -> Result<(), LoaderError> {
        for name in present.keys().filter(|n| !wanted.contains_key(*n)) {
            self.detach_filters_of(name)?;
        }
        Ok(())
    }

    /// Deletes this pin directory's filters from `name`, saying so when
    /// there were some.
    fn detach_filters_of(&self, name: &str) -> Result<(), LoaderError> {
        if clsact::detach_both(name, self.filter)? {
            tracing::info!(interface = %name, "interface no longer watched: detached");
        }
        Ok(())
    }

    /// Whether a device that this pin directory counts (by a pinned TCX
    /// link or clsact filters) has a name now that `present` lacks: it was
    /// renamed after `present` was listed, and a pass on that list would
    /// take it for a device that is gone, or its new name for one that is
    /// not watched, and detach it.
    fn renamed_since(&self, present: &BTreeMap<String, Interface>) -> Result<bool, LoaderError> {
        let mut indexes: Vec<u32> = self.devices.values().copied().collect();
        for attachment in pinned_links(&self.pins)? {
            if let Ok(link) = relink::open_pinned(&self.pins.link(&attachment))
                && let Ok(Some(index)) = relink::tcx_ifindex(link.as_fd())
            {
                indexes.push(index);
            }
        }
        Ok(indexes
            .into_iter()
            .any(|index| name_of(index).is_some_and(|now| !present.contains_key(&now))))
    }

    /// In [`clsact::Mode::Clsact`]: keeps the filters that are on the
    /// wanted device of their name; forgets those whose device is gone
    /// (a device made again under the name gets filters anew) or is
    /// wanted under a new name (renamed: its filters are found again
    /// there), and deletes those of a device that is not wanted under the
    /// name it has now.
    fn forget_filters(&mut self, wanted: &BTreeMap<String, &Interface>) -> Result<(), LoaderError> {
        let devices = std::mem::take(&mut self.devices);
        for (name, index) in devices {
            match name_of(index) {
                Some(now) if now == name && wanted.contains_key(&name) => {
                    self.devices.insert(name, index);
                    continue;
                }
                Some(now) if !wanted.contains_key(&now) => self.detach_filters_of(&now)?,
                _ => {}
            }
            self.attached.remove(&Attachment::TcIngress(name.clone()));
            self.attached.remove(&Attachment::TcEgress(name));
        }
        Ok(())
    }

    /// The attachment that the pinned link of `attachment` belongs under
    /// now: the same hook on the name its device has now, if the device
    /// still exists under another name that is wanted and has no link yet.
    fn renamed(
        &self,
        attachment: &Attachment,
        wanted: &BTreeMap<String, &Interface>,
    ) -> Option<Attachment> {
        let link = relink::open_pinned(&self.pins.link(attachment)).ok()?;
        let index = relink::tcx_ifindex(link.as_fd()).ok()??;
        let now = name_of(index)?;
        let renamed = attachment.on(&now)?;
        (Some(now.as_str()) != attachment.interface()
            && wanted.contains_key(&now)
            && !self.pins.link(&renamed).exists())
        .then_some(renamed)
    }

    /// Whether the pinned link of `attachment` is attached to the device
    /// that is called `ifname` now. Links other than TCX links, and links
    /// that cannot be read, are taken to be.
    fn on_its_device(&self, attachment: &Attachment, ifname: &str) -> bool {
        let Ok(link) = relink::open_pinned(&self.pins.link(attachment)) else {
            return true;
        };
        match relink::tcx_ifindex(link.as_fd()) {
            Ok(Some(index)) => nix::net::if_::if_nametoindex(ifname).is_ok_and(|now| now == index),
            _ => true,
        }
    }

    fn attach_tc(
        &mut self,
        attachment: &Attachment,
        framing: Framing,
        addresses: bool,
    ) -> Result<(), LoaderError> {
        let [ingress, egress] = tc_programs(framing, addresses);
        let (ifname, kind, prog_name) = match attachment {
            Attachment::TcIngress(i) => (i, TcAttachType::Ingress, ingress),
            Attachment::TcEgress(i) => (i, TcAttachType::Egress, egress),
            _ => unreachable!("attach_tc takes tc attachments"),
        };
        let ifname = ifname.clone();
        let what = format!("{prog_name} to {ifname}");
        let path = self.pins.link(attachment);
        let (mode, filter) = (self.mode, self.filter);
        let prog: &mut SchedClassifier = self.program(prog_name)?;
        if mode == clsact::Mode::Clsact {
            let index = nix::net::if_::if_nametoindex(ifname.as_str()).map_err(|e| {
                LoaderError::Attach {
                    what: what.clone(),
                    source: ProgramError::IOError(e.into()),
                }
            })?;
            clsact::attach(prog, &ifname, kind, filter)
                .map_err(|source| LoaderError::Attach { what, source })?;
            self.devices.insert(ifname, index);
            return Ok(());
        }
        // A pinned link from an earlier run: swap in the new program atomically.
        if let Ok(pinned) = PinnedLink::from_pin(&path) {
            let replaced = SchedClassifierLink::try_from(FdLink::from(pinned))
                .ok()
                .and_then(|link| prog.attach_to_link(link).ok());
            if replaced.is_some() {
                return Ok(());
            }
            // Defunct (the interface was recreated): start over.
            remove_pin(&path)?;
        }
        // TCX explicitly: aya's `attach` falls back to a netlink (clsact)
        // filter, which cannot be pinned, where it finds (or cannot read)
        // an older kernel version.
        let id = prog
            .attach_with_options(
                &ifname,
                kind,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(|source| LoaderError::Attach {
                what: what.clone(),
                source,
            })?;
        pin(prog.take_link(id), &path, &what)
    }
}

/// The name of the device with `index` now; `None` when it is gone (nix
/// gives "" then).
fn name_of(index: u32) -> Option<String> {
    nix::net::if_::if_indextoname(index)
        .ok()
        .and_then(|n| n.into_string().ok())
        .filter(|n| !n.is_empty())
}
