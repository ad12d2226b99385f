import * as tf from '@tensorflow/tfjs-core';
import { attention, geluTanh, layerNorm, linearFrom, NORM_EPS, type Linear, type Rope } from './ops.ts';
import { Modulation, modulate } from './modulation.ts';
import { SelfAttention } from './self-attention.ts';
import { linearSpec, type ParamSpec, type Weights } from '../weights/spec.ts';

export interface BlockDims {
  hidden_size: number;
  num_heads: number;
  mlp_ratio: number;
  qkv_bias: boolean;
}

/** `nn.Sequential(Linear, GELU(tanh), Linear)`: indices 0 and 2 as in the checkpoint (index 1 has no weights). */
type Mlp = [Linear, 'gelu_tanh', Linear];

function mlpForward(mlp: Mlp, x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => mlp[2].forward(geluTanh(mlp[0].forward(x))));
}

/**
 * BFL DoubleStreamBlock (layers.py:129-191): separate weights for the image and text streams, one joint attention
 * over [txt; img]. Built from one block's weights (keys relative to `double_blocks.{i}.`, as `spec` lists them).
 */
export class DoubleStreamBlock {
  readonly img_mod: Modulation;
  readonly img_attn: SelfAttention;
  readonly img_mlp: Mlp;
  readonly txt_mod: Modulation;
  readonly txt_attn: SelfAttention;
  readonly txt_mlp: Mlp;

  static spec(d: BlockDims): ParamSpec {
    const mlpHidden = Math.trunc(d.hidden_size * d.mlp_ratio);
    const stream = (s: 'img' | 'txt'): ParamSpec => ({
      ...Modulation.spec(`${s}_mod`, d.hidden_size, true),
      ...SelfAttention.spec(`${s}_attn`, d.hidden_size, d.num_heads, d.qkv_bias),
      ...linearSpec(`${s}_mlp.0`, d.hidden_size, mlpHidden),
      ...linearSpec(`${s}_mlp.2`, mlpHidden, d.hidden_size),
    });
    return { ...stream('img'), ...stream('txt') };
  }

  readonly dims: BlockDims;
  constructor(
    dims: BlockDims,
    w: Weights,
  ) {
    this.dims = dims;
    this.img_mod = new Modulation(w, 'img_mod', true);
    this.img_attn = new SelfAttention(w, 'img_attn', dims.num_heads);
    this.img_mlp = [linearFrom(w, 'img_mlp.0'), 'gelu_tanh', linearFrom(w, 'img_mlp.2')];
    this.txt_mod = new Modulation(w, 'txt_mod', true);
    this.txt_attn = new SelfAttention(w, 'txt_attn', dims.num_heads);
    this.txt_mlp = [linearFrom(w, 'txt_mlp.0'), 'gelu_tanh', linearFrom(w, 'txt_mlp.2')];
  }

  // img [B, L_img, hidden], txt [B, L_txt, hidden], vec [B, hidden], pe over [txt; img] -> (img, txt)
  forward(img: tf.Tensor, txt: tf.Tensor, vec: tf.Tensor, pe: Rope, headChunk?: number): [tf.Tensor, tf.Tensor] {
    return tf.tidy(() => {
      const [imgMod1, imgMod2] = this.img_mod.forward(vec);
      const [txtMod1, txtMod2] = this.txt_mod.forward(vec);
      const [imgQ, imgK, imgV] = this.img_attn.qkvHeads(modulate(layerNorm(img, NORM_EPS), imgMod1)); // each [B,H,L_img,D]
      const [txtQ, txtK, txtV] = this.txt_attn.qkvHeads(modulate(layerNorm(txt, NORM_EPS), txtMod1)); // each [B,H,L_txt,D]

      const q = tf.concat([txtQ, imgQ], 2); // [B,H,L_txt+L_img,D]
      const k = tf.concat([txtK, imgK], 2);
      const v = tf.concat([txtV, imgV], 2);
      const attn = attention(q, k, v, pe, { headChunk }); // [B, L, hidden]
      const lTxt = txt.shape[1]!;
      const txtAttn = tf.slice(attn, [0, 0, 0], [-1, lTxt, -1]);
      const imgAttn = tf.slice(attn, [0, lTxt, 0], [-1, -1, -1]);

      let imgOut = tf.add(img, tf.mul(imgMod1.gate, this.img_attn.proj.forward(imgAttn)));
      imgOut = tf.add(imgOut, tf.mul(imgMod2!.gate, mlpForward(this.img_mlp, modulate(layerNorm(imgOut, NORM_EPS), imgMod2!))));
      let txtOut = tf.add(txt, tf.mul(txtMod1.gate, this.txt_attn.proj.forward(txtAttn)));
      txtOut = tf.add(txtOut, tf.mul(txtMod2!.gate, mlpForward(this.txt_mlp, modulate(layerNorm(txtOut, NORM_EPS), txtMod2!))));
      return [imgOut, txtOut] as [tf.Tensor, tf.Tensor];
    });
  }
}
