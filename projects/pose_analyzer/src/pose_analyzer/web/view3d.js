// pose_analyzer live page, 3D sessions: the rig list (/api/rigs), each stream's start message (stream
// i is camera i of the rig; the first stream's session is joined by the others), and the session's
// skeleton (answers' pose3d, output.Pose3DOut) on a plain canvas, turned by dragging with the mouse
// or a finger: orthographic view, world z up, centred on the body, scaled to fit.  A multi-person
// session's other people (pose3d.people after the first) are drawn fainter, each with its id.
// Plain browser JavaScript, no dependencies; it uses app.js's helpers ($, withKey, params).
"use strict";

const VIEW3D_BONES = [
  [5, 6], [5, 7], [7, 9], [6, 8], [8, 10], [5, 11], [6, 12], [11, 12],
  [11, 13], [13, 15], [12, 14], [14, 16],
  [15, 17], [17, 19], [15, 19], [16, 18], [18, 20], [16, 20],
  [0, 1], [0, 2], [1, 3], [2, 4],
];
// keypoints.py: the nose is 0, left keypoints have odd indices, right ones even.
const VIEW3D_COLORS = { left: "#ff9f1c", right: "#2ec4b6", centre: "#f1f1f1" };

function view3dSide(index) {
  if (index === 0) return "centre";
  return index % 2 === 1 ? "left" : "right";
}

class SkeletonView3D {
  constructor(canvas) {
    this.canvas = canvas;
    this.yaw = -0.6;     // radians about the world's vertical (z)
    this.pitch = 0.25;   // radians of looking down
    this.pose = null;
    this.drawn = 0;
    let drag = null;
    canvas.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY, yaw: this.yaw, pitch: this.pitch };
      canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!drag) return;
      this.rotateTo(drag.yaw + (e.clientX - drag.x) * 0.01, drag.pitch + (e.clientY - drag.y) * 0.01);
    });
    const end = () => { drag = null; };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
  }

  rotateTo(yaw, pitch) {
    this.yaw = yaw;
    this.pitch = Math.max(-1.5, Math.min(1.5, pitch));
    this.draw();
  }

  update(pose3d) {
    this.pose = pose3d;
    this.draw();
  }

  // World (x, y, z up) -> view (right, up, depth) after the yaw about z and the pitch.
  project(p) {
    const cy = Math.cos(this.yaw), sy = Math.sin(this.yaw);
    const cp = Math.cos(this.pitch), sp = Math.sin(this.pitch);
    const x = cy * p[0] - sy * p[1];
    const y = sy * p[0] + cy * p[1];
    return [x, cp * p[2] - sp * y, sp * p[2] + cp * y];
  }

  // Draws the latest pose; returns (and keeps in .drawn) how many keypoints were drawn.
  draw() {
    const { canvas } = this;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    this.drawn = 0;
    const points = this.pose ? this.pose.keypoints : [];
    const seen = points.filter((p) => p !== null);
    if (seen.length === 0) {
      ctx.fillStyle = "#8a96a8";
      ctx.fillText("no 3D pose yet", 10, 20);
      return 0;
    }
    const centre = [0, 1, 2].map((i) => seen.reduce((s, p) => s + p[i], 0) / seen.length);
    const others = (this.pose.people || []).slice(1);
    const local = (pts) => pts.map((p) => (p === null ? null : this.project(p.map((v, i) => v - centre[i]))));
    const views = [local(points), ...others.map((o) => local(o.keypoints))];
    const all = views.flat().filter(Boolean);
    const extent = Math.max(0.5, ...all.map((v) => Math.max(Math.abs(v[0]), Math.abs(v[1]))));
    const scale = (0.45 * Math.min(canvas.width, canvas.height)) / extent;
    const toScreen = (view) => view.map((v) => (v === null ? null : [canvas.width / 2 + v[0] * scale, canvas.height / 2 - v[1] * scale]));
    ctx.globalAlpha = 0.45;
    others.forEach((other, k) => {
      const screen = toScreen(views[k + 1]);
      this.drawSkeleton(ctx, screen);
      const head = screen.find(Boolean);
      if (head) {
        ctx.fillStyle = VIEW3D_COLORS.centre;
        ctx.fillText(`#${other.id}`, head[0] + 6, head[1] - 6);
      }
    });
    ctx.globalAlpha = 1;
    this.drawn = this.drawSkeleton(ctx, toScreen(views[0]));
    const error = this.pose.reprojection_mean_px;
    ctx.fillStyle = "#e8edf5";
    ctx.font = "600 13px system-ui, sans-serif";
    const cams = `${this.pose.cameras.length} cameras`;
    const count = others.length ? ` · ${others.length + 1} people` : "";
    ctx.fillText(`${cams} · reprojection ${error === null ? "–" : error.toFixed(1)} px · reps ${this.pose.rep_count}${count}`, 10, 20);
    return this.drawn;
  }

  // Bones and joints of one skeleton in screen pixels (null: unseen); returns the joints drawn.
  drawSkeleton(ctx, screen) {
    let drawn = 0;
    ctx.lineWidth = 3;
    ctx.lineCap = "round";
    for (const [a, b] of VIEW3D_BONES) {
      if (!screen[a] || !screen[b]) continue;
      const side = view3dSide(a) === view3dSide(b) ? view3dSide(a) : "centre";
      ctx.strokeStyle = VIEW3D_COLORS[side];
      ctx.beginPath();
      ctx.moveTo(...screen[a]);
      ctx.lineTo(...screen[b]);
      ctx.stroke();
    }
    screen.forEach((s, i) => {
      if (!s) return;
      ctx.fillStyle = VIEW3D_COLORS[view3dSide(i)];
      ctx.beginPath();
      ctx.arc(s[0], s[1], 4, 0, 2 * Math.PI);
      ctx.fill();
      drawn += 1;
    });
    return drawn;
  }
}

const rigCameras = {};  // rig name -> its camera names, in order

async function loadRigs() {
  window.view3d = new SkeletonView3D($("#view3d"));
  let rigs = [];
  try {
    const response = await fetch(withKey("/api/rigs"), { headers: { Accept: "application/json" } });
    if (response.ok) rigs = await response.json();
  } catch (err) {
    console.warn("rig list unavailable", err);
  }
  const select = $("#rig");
  for (const rig of rigs) {
    rigCameras[rig.name] = rig.cameras;
    const option = document.createElement("option");
    option.value = rig.name;
    option.textContent = `${rig.name} (${rig.cameras.length} cameras)`;
    select.append(option);
  }
  const wanted = params.get("rig");
  if (wanted && rigCameras[wanted]) select.value = wanted;
}

// One async () => start message (or null) per stream; with a rig, .first takes the first stream's
// "started" (its session id, which the other streams then join).
function startMessages(exercise, rig, count) {
  const plain = () => (exercise ? { type: "start", exercise } : null);
  $("#view3d-panel").hidden = !rig;
  if (!rig) return Array.from({ length: count }, () => plain);
  const cameras = rigCameras[rig] || [];
  const base = { type: "start", rig, ...(exercise ? { exercise } : {}) };
  let resolveSession;
  const session = new Promise((resolve) => { resolveSession = resolve; });
  const starts = Array.from({ length: count }, (_, i) => async () => (
    i === 0 ? { ...base, camera: cameras[0] } : { ...base, camera: cameras[i], session_id: await session }
  ));
  starts.first = (message) => resolveSession(message.session_id);
  return starts;
}
