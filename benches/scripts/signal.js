// Loaded into the live benchmarks' pages (addInitScript): WHIP/WHEP signalling of a peer
// connection whose tracks and transceivers are set up.
window.signal = async (url, bearer, pc) => {
  await pc.setLocalDescription(await pc.createOffer());
  // A moment for the host candidates to gather into the offer (no trickle ICE).
  await new Promise((r) => setTimeout(r, 500));
  const res = await fetch(url, {
    method: 'POST', headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${bearer}` }, body: pc.localDescription.sdp,
  });
  const answer = await res.text();
  if (res.status !== 201) throw new Error(`${url}: ${res.status}: ${answer}`);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
};
